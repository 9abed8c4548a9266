"""Arguments and loading shared by the inference commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="PATH", default=None,
                        help="checkpoint (.safetensors); default: the shipped model")
    parser.add_argument("--backbone", default=None,
                        help="no checkpoint: this backbone's pretrained embeddings, "
                             "no trained heads")
    parser.add_argument("--backbone-weights", metavar="PATH", default=None,
                        help="weights file for backbones that do not ship their own (facenet)")
    parser.add_argument("--crop", choices=("aligned", "padded", "center"), default=None,
                        help="face crop (default: the model's, normally aligned)")
    parser.add_argument("--select", choices=("largest", "central", "score"), default=None,
                        help="which face when there are several (default: the model's)")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                        help="average each face with its mirror image (default: as the model "
                             "was calibrated)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")


def load_service(args: argparse.Namespace):
    from siamface.service import load

    return load(args.model, crop=args.crop, select=args.select, flip=args.flip,
                device=args.device, backbone=args.backbone,
                backbone_weights=args.backbone_weights)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
