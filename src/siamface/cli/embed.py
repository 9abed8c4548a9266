"""``siamface embed DIR --out FILE``: one embedding per image, written to an .npz file."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from siamface.cli._common import add_model_arguments, load_service, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="embed every image under a folder into an .npz file")
    p.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    p.add_argument("--out", type=Path, required=True, help="output .npz file")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    add_model_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np
    from tqdm import tqdm

    from siamface._atomic import atomic_write_bytes
    from siamface.cache import find_images
    from siamface.errors import DatasetError, SiamfaceError
    from siamface.io import IMAGE_EXTENSIONS, load_image

    if args.out.is_dir():
        raise DatasetError(f"--out {args.out} is a folder; give a file name such as emb.npz")
    if not args.folder.is_dir():
        raise DatasetError(f"folder {args.folder} does not exist or is not a folder")
    files = find_images(args.folder)
    if not files:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) under {args.folder}")
    service = load_service(args)
    paths, embeddings, detected, failed = [], [], [], []
    bar = tqdm(total=len(files), unit="img", disable=not args.progress, desc="embed")
    for start in range(0, len(files), args.batch_size):
        batch = []
        for path in files[start:start + args.batch_size]:
            try:
                batch.append((path, load_image(path)))
            except SiamfaceError as exc:
                failed.append((str(path), str(exc)))
        if batch:
            faces = service.faces([image for _, image in batch])
            for (path, _), face in zip(batch, faces):
                paths.append(str(path.relative_to(args.folder)))
                embeddings.append(face.embedding)
                detected.append(face.detected)
        bar.update(len(files[start:start + args.batch_size]))
        bar.set_postfix(embedded=len(paths), failed=len(failed))
    bar.close()
    buffer = io.BytesIO()
    np.savez(
        buffer,
        paths=np.array(paths, dtype=str),
        embeddings=np.array(embeddings, dtype=np.float32).reshape(len(paths), -1),
        detected=np.array(detected, dtype=bool),
        backbone=np.array(service.info.backbone),
    )
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {len(paths)} embeddings to {args.out}"
          + (f"; {len(failed)} images could not be read:" if failed else ""))
    for path, error in failed:
        print(f"  {error}", file=sys.stderr)
    return 0
