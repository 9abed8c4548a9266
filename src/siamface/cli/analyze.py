"""``siamface analyze IMG...``: gender (and where the face is) for each image."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from siamface.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_PARTIAL,
    add_model_arguments,
    load_service,
    print_json,
    report_skipped,
)

NO_GENDER_HEAD = ("this model has no trained gender head, so no gender is reported; "
                  "train one with `siamface train` or use the shipped default model")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("analyze", help="gender and face location for each image")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--all-faces", action="store_true", help="report every face, not one")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_model_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from siamface.errors import ImageDecodeError
    from siamface.io import load_image

    service = None
    results, failures = [], []
    for image in args.images:
        try:  # decoded once; bad files are reported, not fatal
            pixels = load_image(image, max_pixels=args.max_pixels)
        except ImageDecodeError as exc:
            failures.append((image, exc.reason))
            continue
        if service is None:
            service = load_service(args)
        results.extend(dataclasses.replace(face, source=image)
                       for face in service.analyze(pixels, all_faces=args.all_faces))
    gender_ok = service.gender_available if service is not None else False
    if args.json:
        print_json({
            "gender_head": "trained" if gender_ok else "untrained",
            "faces": [f.to_dict() for f in results],
            "errors": [{"source": source, "error": reason} for source, reason in failures],
        })
    else:
        if results and not gender_ok:
            print(f"note: {NO_GENDER_HEAD}")
        for face in results:
            if not face.has_face:
                print(f"{face.source}: NO FACE ({face.no_face}); no gender")
                continue
            retry = ("" if face.detected_by in (None, "detector")
                     else f" (found on a restored copy: {face.detected_by})")
            if face.restored is not None:
                retry += f" (chip restored: {face.restored})"
            where = (f"face at {[round(v) for v in face.box]} score {face.score:.3f}{retry}"
                     if face.detected else f"no face detected, used the centre crop (face "
                     f"score {face.face_score:.2f})")
            gender = (f"{face.gender.label} ({face.gender.probability:.1%})"
                      if face.gender else "gender: n/a")
            print(f"{face.source}: {gender}; {where}")
    if failures and not results:  # nothing could be read: bad input, not a partial result
        for source, reason in failures:
            print(f"siamface analyze: error: cannot read image {source}: {reason}",
                  file=sys.stderr)
        return EXIT_BAD_INPUT
    code = report_skipped("analyze", failures, "image")
    return EXIT_PARTIAL if any(not f.has_face for f in results) else code
