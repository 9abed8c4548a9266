"""``siamface distort SRC DST``: write a distorted copy of an image folder for robustness
evaluation.

Layouts of DST:

* ``mirror`` (default): ``DST/<kind>/<path under SRC>``, one full copy of SRC per kind.
* ``facecom``: the FACECOM Task_B shape: each original is copied to ``DST/<path under SRC>``
  and its distortions are written beside it as ``<folder>/distortion/<stem>_<kind>.jpg``.
  Images already inside a ``distortion`` folder of SRC are not used as sources.

Each output is seeded from ``--seed``, the kind and the image's path under SRC, so a rerun
(or a resumed run) writes the same bytes. Files are written to a temporary name and renamed;
existing outputs are skipped unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from siamface._atomic import atomic_path, atomic_write_bytes
from siamface.cli._common import report_skipped
from siamface.errors import DatasetError, ImageDecodeError
from siamface.io import IMAGE_EXTENSIONS, find_images, load_image

__all__ = ["LAYOUTS", "DistortSummary", "add_parser", "distort_tree", "run"]

log = logging.getLogger(__name__)
LAYOUTS = ("mirror", "facecom")


@dataclass
class DistortSummary:
    """What ``distort_tree`` did: files written, skipped (already there) and failed."""

    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def _source_images(src: Path, layout: str) -> list[Path]:
    """Images under ``src`` as relative paths, sorted; for the facecom layout, images already
    inside a ``distortion`` folder are not sources."""
    skip = ("distortion",) if layout == "facecom" else ()
    return [path.relative_to(src) for path in find_images(src, skip_dirs=skip)]


def _seed_for(seed: int, kind: str, rel: Path) -> int:
    return zlib.crc32(f"{seed}:{kind}:{rel.as_posix()}".encode())


def _atomic_copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def _encode(rgb: np.ndarray, suffix: str, quality: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if suffix in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise DatasetError(f"cannot encode an image as {suffix}")
    return buf.tobytes()


def _targets(rel: Path, kinds: list[str], layout: str, dst: Path) -> list[tuple[str, Path]]:
    if layout == "mirror":
        return [(kind, dst / kind / rel) for kind in kinds]
    folder = dst / rel.parent / "distortion"
    return [(kind, folder / f"{rel.stem}_{kind}.jpg") for kind in kinds]


def distort_tree(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    kinds: list[str],
    *,
    seed: int = 0,
    layout: str = "mirror",
    quality: int = 95,
    overwrite: bool = False,
    progress: bool = True,
) -> DistortSummary:
    """Write distorted copies of every image under ``src`` into ``dst`` (see the module
    docstring for the layouts). Unreadable images are logged and listed in ``failed``."""
    from siamface.augment import DISTORTIONS, distort  # albumentations only when used
    from siamface.errors import UnknownNameError

    src, dst = Path(src).resolve(), Path(dst).resolve()
    if layout not in LAYOUTS:
        raise UnknownNameError("distort layout", layout, LAYOUTS)
    for kind in kinds:
        if kind not in DISTORTIONS:
            raise UnknownNameError("distortion", kind, DISTORTIONS)
    if not src.is_dir():
        raise DatasetError(f"source folder {src} not found")
    if dst == src or src in dst.parents:
        raise DatasetError(f"destination {dst} must not be the source folder or inside it")
    images = _source_images(src, layout)
    if not images:
        raise DatasetError(f"{src} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    summary = DistortSummary()
    for rel in tqdm(images, desc="distort", unit="img", disable=not progress):
        jobs = _targets(rel, kinds, layout, dst)
        if layout == "facecom":
            copy_to = dst / rel
            if copy_to.exists() and not overwrite:
                summary.skipped += 1
            else:
                _atomic_copy(src / rel, copy_to)
                summary.written += 1
        todo = [(k, out) for k, out in jobs if overwrite or not out.exists()]
        summary.skipped += len(jobs) - len(todo)
        if not todo:
            continue
        try:
            rgb = load_image(src / rel)
        except ImageDecodeError as exc:
            log.warning("%s; skipped", exc)
            summary.failed.append((str(src / rel), exc.reason))
            continue
        for kind, out in todo:
            image = distort(rgb, kind, seed=_seed_for(seed, kind, rel))
            atomic_write_bytes(out, _encode(image, out.suffix.lower(), quality))
            summary.written += 1
    return summary


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``distort`` on the ``siamface`` command line."""
    from siamface.data.facecom import DISTORTION_TAGS

    kinds = list(DISTORTION_TAGS)
    parser = subparsers.add_parser(
        "distort",
        help="write a distorted copy of an image folder (robustness evaluation)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC", help="folder of images to distort")
    parser.add_argument("dst", type=Path, metavar="DST", help="output folder")
    parser.add_argument("--kinds", nargs="+", choices=kinds, default=kinds, metavar="KIND",
                        help=f"distortions to write (default: all): {', '.join(kinds)}")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--layout", choices=LAYOUTS, default="mirror",
                        help="mirror: DST/<kind>/<path>; facecom: originals plus "
                             "<person>/distortion/<stem>_<kind>.jpg (default: mirror)")
    parser.add_argument("--quality", type=_jpeg_quality, default=95,
                        help="JPEG quality 1-100 (default: 95)")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="rewrite outputs that already exist (default: skip them)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar (default: on)")
    parser.set_defaults(run=run)
    return parser


def _jpeg_quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer 1-100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected an integer 1-100, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``siamface distort``; 0 when every image was processed, 3 if some were skipped."""
    summary = distort_tree(
        args.src, args.dst, list(dict.fromkeys(args.kinds)), seed=args.seed,
        layout=args.layout, quality=args.quality, overwrite=args.overwrite,
        progress=args.progress,
    )
    print(f"wrote {summary.written}, skipped {summary.skipped} existing, "
          f"failed {len(summary.failed)} -> {args.dst}")
    return report_skipped("distort", summary.failed, "image")
