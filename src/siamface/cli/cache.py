"""``siamface cache info|clear``: the face crops and embeddings that ``evaluate``, ``calibrate``
and ``identify`` keep so a second run is fast. They are biometric data: this shows where they
are and removes them. Location: ``--cache DIR``, else ``$SIAMFACE_DATA_CACHE``, else
``~/.cache/siamface/faces``."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from siamface.cli._common import EXIT_OK

PARTS = ("crops", "embeddings")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="where face crops and embeddings are cached; info or "
                       "clear", description=__doc__)
    p.add_argument("action", choices=("info", "clear"))
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="cache folder (default: $SIAMFACE_DATA_CACHE or ~/.cache/siamface/faces)")
    p.add_argument("--only", choices=PARTS, default=None,
                   help="clear only the crops or only the embeddings")
    p.set_defaults(run=run)


def _size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def _namespaces(root: Path, part: str) -> list[Path]:
    """Folders that are ours: a namespace always holds a params.json."""
    folder = root / part
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and (p / "params.json").is_file())


def _describe(namespace: Path, part: str) -> str:
    try:
        params = json.loads((namespace / "params.json").read_text())
    except (OSError, ValueError):
        return "unreadable params.json"
    if part == "embeddings":
        pipeline = params.get("pipeline", {})
        return f"model {str(params.get('model'))[:40]}..., crop {pipeline.get('crop')}"
    params = params.get("params", params)
    return (f"crop {params.get('crop')}, chip {params.get('chip_size')}, "
            f"fallback {params.get('fallback_policy')}")


def run(args: argparse.Namespace) -> int:
    from siamface.cache import data_cache_dir

    root = Path(args.cache) if args.cache else data_cache_dir()
    if args.action == "info":
        print(f"cache: {root}{'' if root.is_dir() else ' (empty: not created yet)'}")
        for part in PARTS:
            spaces = _namespaces(root, part)
            files, size = (sum(v) for v in zip(*(_size(s) for s in spaces))) if spaces \
                else (0, 0)
            print(f"{part}: {len(spaces)} namespace(s), {files} file(s), {size / 1e6:.1f} MB")
            for space in spaces:
                n, b = _size(space)
                print(f"  {space.name}  {n} files, {b / 1e6:.1f} MB  ({_describe(space, part)})")
        return EXIT_OK
    freed = removed = 0
    for part in ([args.only] if args.only else PARTS):
        for space in _namespaces(root, part):
            freed += _size(space)[1]
            shutil.rmtree(space)
            removed += 1
    print(f"removed {removed} namespace(s), {freed / 1e6:.1f} MB from {root}")
    return EXIT_OK
