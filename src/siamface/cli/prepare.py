"""``siamface prepare DATA_DIR --cache DIR``: crop every face under a folder into the crop cache.

Resumable: images already in the cache (same file content, same preprocessing parameters)
are skipped, so an interrupted run is simply started again. Images that cannot be read are
listed with their reason at the end; they do not stop the run, and the exit code is 3.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

from siamface.cli._common import positive_int, report_skipped, retries_from
from siamface.errors import ConfigError

__all__ = ["DEFAULT_PIPELINE", "add_parser", "resolve_factory", "run"]

DEFAULT_PIPELINE = "siamface.service:pipeline_for"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from siamface.cli._common import add_image_arguments

    parser = subparsers.add_parser(
        "prepare",
        help="crop the faces of an image folder into a cache (resumable)",
        description="Crop the face of every image under DATA_DIR into the crop cache, as the "
                    "model (--model) or backbone (--backbone) that will train on it crops: its "
                    "chip size and alignment template. Resumable: images already cached with "
                    "the same parameters are skipped. Unreadable images are listed at the end "
                    "and do not stop the run (exit code 3).",
    )
    parser.add_argument("data_dir", metavar="DATA_DIR",
                        help="folder of images (searched recursively)")
    parser.add_argument("--cache", metavar="DIR", required=True, help="crop cache folder")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--model", metavar="PATH", default=None,
                       help="crop as this checkpoint does (default: the shipped model)")
    which.add_argument("--backbone", default=None,
                       help="crop as this backbone's pretrained config says, e.g. facenet")
    add_image_arguments(parser)
    parser.add_argument("--workers", type=positive_int, default=1, metavar="N",
                        help="worker processes (default: 1, in this process)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="show a progress bar (default: on)")
    # Hidden: "module:callable" building the pipeline, for tests and experiments.
    parser.add_argument("--pipeline-factory", default=DEFAULT_PIPELINE, help=argparse.SUPPRESS)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from siamface.cache import prepare
    from siamface.io import find_images

    find_images(args.data_dir)  # a missing folder fails here, before any model is loaded
    options: dict[str, Any] = {"crop": args.crop, "select": args.select}
    if args.pipeline_factory == DEFAULT_PIPELINE:
        options.update(path=args.model, backbone=args.backbone, max_pixels=args.max_pixels,
                       fallback_policy=args.fallback_policy, retries=retries_from(args))
    options = {k: v for k, v in options.items() if v is not None}
    factory = functools.partial(resolve_factory(args.pipeline_factory), **options)
    factory()  # a bad --model or --backbone fails here, before any image is read
    report = prepare(args.data_dir, args.cache, factory, workers=args.workers,
                     progress=args.progress)

    print(f"prepared {report.total} images into {report.namespace} in {report.seconds:.1f} s")
    print(f"  {report.processed} cropped now, {report.cached} already cached")
    counts = [f"{report.detected} detected", f"{report.fallback} fallback"]
    if report.plain:
        counts.append(f"{report.plain} without detection")
    if report.absent:
        counts.append(f"{report.absent} without a face")
    counts.append(f"{report.failed} failed")
    print("  " + ", ".join(counts))
    if report.failures:
        print(f"{len(report.failures)} image(s) skipped:")
        for path, reason in report.failures:
            print(f"  {path}: {reason}")
    sys.stdout.flush()
    return report_skipped("prepare", report.failures, "image")


def resolve_factory(spec: str) -> Callable[..., Any]:
    """The callable named by ``"package.module:attribute"``."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"pipeline factory must look like 'module:callable', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for the face pipeline: {exc}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(f"{module_name!r} has no attribute {attr!r}") from exc
    if not callable(factory):
        raise ConfigError(f"{spec!r} is not callable")
    return factory
