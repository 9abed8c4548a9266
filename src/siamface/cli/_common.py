"""Arguments and loading shared by the inference commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

# The exit-code rule of every command (README, "Exit codes"): a shell script can rely on it.
EXIT_OK = 0  # success; for verify: MATCH
EXIT_NO_MATCH = 1  # verify: NO MATCH
EXIT_BAD_INPUT = 2  # usage error, unreadable input or config
EXIT_PARTIAL = 3  # finished with some inputs skipped, or no verdict (no face)
SHOWN_REASONS = 5


def report_skipped(command: str, skipped: Sequence[tuple[str, str]], what: str = "input") -> int:
    """Print how many inputs were skipped and the first reasons on stderr; the exit code."""
    if not skipped:
        return EXIT_OK
    print(f"siamface {command}: {len(skipped)} {what}(s) skipped:", file=sys.stderr)
    for source, reason in skipped[:SHOWN_REASONS]:
        print(f"  {source}: {reason}", file=sys.stderr)
    if len(skipped) > SHOWN_REASONS:
        print(f"  ... and {len(skipped) - SHOWN_REASONS} more", file=sys.stderr)
    return EXIT_PARTIAL


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """The face pipeline's options: crop mode, selection rule and image size limit."""
    from siamface.detect.restore import DEFAULT_RETRIES, RETRIES
    from siamface.faces import CROP_MODES, FALLBACK_POLICIES, SELECT_RULES
    from siamface.io import DEFAULT_MAX_PIXELS

    parser.add_argument("--crop", choices=CROP_MODES, default=None,
                        help="face crop (default: the model's, normally aligned)")
    parser.add_argument("--select", choices=[r for r in SELECT_RULES if r != "all"],
                        default=None,
                        help="which face when there are several (default: the model's)")
    parser.add_argument("--fallback-policy", choices=FALLBACK_POLICIES, default=None,
                        help="when no face is detected, use the centre crop: auto (only if it "
                        "passes the face-presence check; default), always (pre-cropped "
                        "faces), never")
    parser.add_argument("--retries", nargs="+", choices=(*RETRIES, "none"), default=None,
                        metavar="NAME", help="when no face is detected, detect again on "
                        f"restored copies, in the order given, from: {', '.join(RETRIES)} "
                        f"(default: {' '.join(DEFAULT_RETRIES)}), or none")
    parser.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                        metavar="N", help="refuse images with more pixels than this, from "
                        f"their header (default: {DEFAULT_MAX_PIXELS:,})")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from siamface.service import RUNTIMES

    parser.add_argument("--model", metavar="PATH", default=None,
                        help="checkpoint (.safetensors); default: the shipped model")
    parser.add_argument("--backbone", default=None,
                        help="no checkpoint: this backbone's pretrained embeddings, "
                             "no trained heads")
    parser.add_argument("--backbone-weights", metavar="PATH", default=None,
                        help="weights file for backbones that do not ship their own (facenet)")
    add_image_arguments(parser)
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average each face with its mirror image (default: as the model "
                             "was calibrated)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--runtime", choices=RUNTIMES, default="torch",
                        help="torch (default), or the model's ONNX export run by ONNX Runtime "
                             "without torch (made by `siamface export --format onnx "
                             "--with-detector`; onnx-int8: its --int8 model)")
    parser.add_argument("--onnx-dir", metavar="DIR", default=None,
                        help="with --runtime onnx: the export folder (default: the export "
                             "cache)")


def load_service(args: argparse.Namespace, **options: Any):
    """The service ``add_model_arguments``' flags describe (``options``: more of
    :func:`siamface.service.load`'s keywords, e.g. ``batch_size``)."""
    from siamface.service import load

    return load(args.model, crop=args.crop, select=args.select, flip=args.flip,
                device=args.device, backbone=args.backbone,
                backbone_weights=args.backbone_weights, max_pixels=args.max_pixels,
                fallback_policy=args.fallback_policy, retries=retries_from(args),
                runtime=getattr(args, "runtime", "torch"),
                onnx_dir=getattr(args, "onnx_dir", None), **options)


def retries_from(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``--retries``: None for the default, () for ``none``; ``none`` beside a name is an
    error."""
    names = getattr(args, "retries", None)
    if names is None:
        return None
    if "none" in names:
        if len(names) > 1:
            from siamface.errors import ConfigError

            raise ConfigError(f"--retries none cannot be combined with {names}")
        return ()
    return tuple(dict.fromkeys(names))


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
