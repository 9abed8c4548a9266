"""``siamface distort SRC DST``: write a distorted copy of an image folder for robustness
evaluation.

Layouts of DST:

* ``mirror`` (default): ``DST/<kind>/<path under SRC>``, one full copy of SRC per kind; with
  ``--severity N [N ...]`` (1 mild to 5 extreme; 3 is the default distortion), one copy per
  kind and severity in ``DST/<kind>-s<N>/``, a severity sweep ``evaluate --distorted`` reports
  row by row.
* ``facecom``: the FACECOM Task_B shape: each original is copied to ``DST/<path under SRC>``
  and its distortions are written beside it as ``<folder>/distortion/<stem>_<kind>.jpg``.
  Images already inside a ``distortion`` folder of SRC are not used as sources.

Each output is seeded from ``--seed``, the kind and the image's path under SRC (not the
severity: every severity of an image draws the same random numbers), so a rerun
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


def _targets(rel: Path, kinds: list[str], layout: str, dst: Path,
             severities: list[int] | None) -> list[tuple[str, int | None, Path]]:
    if layout == "mirror":
        if severities is None:
            return [(kind, None, dst / kind / rel) for kind in kinds]
        return [(kind, s, dst / f"{kind}-s{s}" / rel) for kind in kinds for s in severities]
    folder = dst / rel.parent / "distortion"
    level = None if severities is None else severities[0]
    return [(kind, level, folder / f"{rel.stem}_{kind}.jpg") for kind in kinds]


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
    severities: list[int] | None = None,
) -> DistortSummary:
    """Write distorted copies of every image under ``src`` into ``dst`` (see the module
    docstring for the layouts); ``severities`` None writes the default severity under the
    kinds' own names. Unreadable images are logged and listed in ``failed``."""
    from siamface.augment import (  # albumentations only when used
        DEFAULT_SEVERITY,
        DISTORTIONS,
        SEVERITIES,
        distort,
    )
    from siamface.errors import ConfigError, UnknownNameError

    src, dst = Path(src).resolve(), Path(dst).resolve()
    if layout not in LAYOUTS:
        raise UnknownNameError("distort layout", layout, LAYOUTS)
    for kind in kinds:
        if kind not in DISTORTIONS:
            raise UnknownNameError("distortion", kind, DISTORTIONS)
    if severities is not None:
        severities = list(dict.fromkeys(severities))
        bad = [v for v in severities if v not in SEVERITIES]
        if bad or not severities:
            raise ConfigError(f"severities must be among {', '.join(map(str, SEVERITIES))}, "
                              f"got {severities!r}")
        if layout == "facecom" and len(severities) > 1:
            raise ConfigError("the facecom layout holds one severity per copy (its file names "
                              "carry the kind only); write a sweep with --layout mirror")
    if not src.is_dir():
        raise DatasetError(f"source folder {src} not found")
    if dst == src or src in dst.parents:
        raise DatasetError(f"destination {dst} must not be the source folder or inside it")
    images = _source_images(src, layout)
    if not images:
        raise DatasetError(f"{src} has no images ({', '.join(IMAGE_EXTENSIONS)})")
    summary = DistortSummary()
    for rel in tqdm(images, desc="distort", unit="img", disable=not progress):
        jobs = _targets(rel, kinds, layout, dst, severities)
        if layout == "facecom":
            copy_to = dst / rel
            if copy_to.exists() and not overwrite:
                summary.skipped += 1
            else:
                _atomic_copy(src / rel, copy_to)
                summary.written += 1
        todo = [(k, level, out) for k, level, out in jobs if overwrite or not out.exists()]
        summary.skipped += len(jobs) - len(todo)
        if not todo:
            continue
        try:
            rgb = load_image(src / rel)
        except ImageDecodeError as exc:
            log.warning("%s; skipped", exc)
            summary.failed.append((str(src / rel), exc.reason))
            continue
        for kind, level, out in todo:
            image = distort(rgb, kind, seed=_seed_for(seed, kind, rel),
                            severity=DEFAULT_SEVERITY if level is None else level)
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
    parser.add_argument("--severity", type=int, nargs="+", choices=range(1, 6), default=None,
                        metavar="N", help="severities 1 (mild) to 5 (extreme) to write, each "
                        "kind into DST/<kind>-sN/ (default: the default distortion, severity "
                        "3, into DST/<kind>/)")
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
        progress=args.progress, severities=args.severity,
    )
    print(f"wrote {summary.written}, skipped {summary.skipped} existing, "
          f"failed {len(summary.failed)} -> {args.dst}")
    return report_skipped("distort", summary.failed, "image")
