"""``siamface verify A B``: are these two photos the same person?"""

from __future__ import annotations

import argparse
import dataclasses

from siamface.cli._common import (
    EXIT_NO_MATCH,
    EXIT_OK,
    EXIT_PARTIAL,
    add_model_arguments,
    load_service,
    print_json,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="are the faces in two images the same person?")
    p.add_argument("a", help="first image")
    p.add_argument("b", help="second image")
    p.add_argument("--threshold", type=float, default=None,
                   help="distance threshold (default: the model's calibrated one)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save-figure", metavar="FILE", default=None,
                   help="write a picture of both crops and the verdict (PNG or JPEG)")
    add_model_arguments(p)
    p.set_defaults(run=run)


def _describe(face) -> str:
    if not face.has_face:
        return f"NO FACE: {face.no_face}"
    parts = []
    if face.gender is not None:
        parts.append(f"{face.gender.label} ({face.gender.probability:.1%})")
    if not face.detected:
        used = "centre crop" if face.fallback else f"{face.crop} crop"
        parts.append(f"no face detected, used the {used} (face score {face.face_score:.2f})")
    return ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    from siamface.io import load_image
    from siamface.render import verdict_text

    # decode first: a bad file fails fast, before the model loads, and is decoded only once
    image_a = load_image(args.a, max_pixels=args.max_pixels)
    image_b = load_image(args.b, max_pixels=args.max_pixels)
    service = load_service(args)
    result = service.verify(image_a, image_b, threshold=args.threshold)
    result = dataclasses.replace(result, a=dataclasses.replace(result.a, source=args.a),
                                 b=dataclasses.replace(result.b, source=args.b))
    if args.save_figure:
        from PIL import Image

        from siamface._atomic import atomic_path
        from siamface.render import verification_figure

        with atomic_path(args.save_figure) as tmp:
            fmt = "JPEG" if args.save_figure.lower().endswith((".jpg", ".jpeg")) else "PNG"
            Image.fromarray(verification_figure(result)).save(tmp, format=fmt)
    code = (EXIT_PARTIAL if result.is_match is None  # no face, no verdict
            else EXIT_OK if result.is_match else EXIT_NO_MATCH)
    if args.json:
        print_json(result.to_dict())
        return code
    measured = ("no verdict" if result.distance is None
                else f"distance {result.distance:.4f}")
    print(f"{verdict_text(result)}  {measured}  threshold {result.threshold:.4f} "
          f"({result.threshold_source})")
    for name, face in (("A", result.a), ("B", result.b)):
        extra = _describe(face)
        print(f"  {name}: {face.source}" + (f"  {extra}" if extra else ""))
    return code
