"""``siamface embed DIR --out FILE``: one embedding per image, written to an .npz file."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

from siamface.cli._common import (
    EXIT_BAD_INPUT,
    add_model_arguments,
    load_service,
    positive_int,
    report_skipped,
)


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
    from siamface.errors import DatasetError
    from siamface.io import IMAGE_EXTENSIONS, find_images

    if args.out.is_dir():
        raise DatasetError(f"--out {args.out} is a folder; give a file name such as emb.npz")
    files = find_images(args.folder)
    if not files:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) under {args.folder}")
    service = load_service(args)
    service.batch_size = args.batch_size
    with tqdm(total=len(files), unit="img", disable=not args.progress, desc="embed") as bar:
        report = service.embed_files(files, root=args.folder, progress=bar.update)
    if not report.paths:
        for source, reason in report.skipped[:5]:
            print(f"siamface embed: error: cannot read image {source}: {reason}",
                  file=sys.stderr)
        return EXIT_BAD_INPUT  # nothing written: no file to leave half-useful
    buffer = io.BytesIO()
    np.savez(buffer, paths=np.array(report.paths, dtype=str), embeddings=report.embeddings,
             detected=report.detected, backbone=np.array(service.info.backbone))
    atomic_write_bytes(args.out, buffer.getvalue())
    print(f"wrote {len(report.paths)} embeddings to {args.out}")
    return report_skipped("embed", report.skipped, "image")
