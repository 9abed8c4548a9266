"""``siamface export --format onnx [--int8] [--with-detector] [--model M] [--out DIR]``: ONNX
graphs of a model (and of MTCNN) with a manifest, for ``--runtime onnx``."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
Without --out the files go to the export cache, where `--runtime onnx` finds them
(SIAMFACE_CACHE/onnx, default ~/.cache/siamface/weights/onnx, one folder per checkpoint and
flip setting); with --out DIR, pass --onnx-dir DIR to the inference commands. The runtime
needs the detector: export with --with-detector. --int8 adds a statically quantised model
(--runtime onnx-int8) calibrated on the faces of --calibration DIR (about 200 images are
enough; at most --calibration-limit are used)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a model (and MTCNN) to ONNX for --runtime onnx",
                       description="Export a checkpoint to ONNX: one graph from aligned uint8 "
                       "chips to (embedding, gender logit), preprocessing and flip average "
                       "inside, and with --with-detector MTCNN's three networks.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--format", choices=["onnx"], required=True, help="export format")
    p.add_argument("--model", metavar="PATH", default=None,
                   help="checkpoint (.safetensors); default: the shipped model")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder (default: the export cache, see below)")
    p.add_argument("--with-detector", action="store_true",
                   help="export MTCNN's P-Net, R-Net and O-Net too (the runtime needs them)")
    p.add_argument("--int8", action="store_true",
                   help="also write an int8 model (static quantisation; needs --calibration)")
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="with --int8: a folder of face images to calibrate on")
    p.add_argument("--calibration-limit", type=int, default=200, metavar="N",
                   help="with --int8: at most N calibration images (default: 200)")
    p.add_argument("--calibration-method", choices=("percentile", "minmax", "entropy"),
                   default="percentile",
                   help="with --int8: how activation ranges are chosen (default: percentile)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average each face with its mirror image in the graph (default: as "
                        "the model was calibrated)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from siamface.errors import ConfigError, DatasetError

    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        print("siamface export: error: ONNX export needs the onnx extra: pip install "
              "'siamface[onnx]'", file=sys.stderr)
        return 2
    calibration = None
    if args.calibration is not None and not args.int8:
        raise ConfigError("--calibration only applies to --int8")
    if args.int8:
        if args.calibration is None:
            raise ConfigError("--int8 is calibrated on real faces: give --calibration DIR")
        from siamface.io import find_images

        files = find_images(args.calibration)
        if not files:
            raise DatasetError(f"no images under {args.calibration} to calibrate on")
        step = max(1, len(files) // max(1, args.calibration_limit))
        calibration = files[::step][:args.calibration_limit]
    from siamface.export import export_onnx

    result = export_onnx(args.out, args.model, flip=args.flip, with_detector=args.with_detector,
                         int8=args.int8, calibration=calibration,
                         calibration_method=args.calibration_method,
                         progress=lambda msg: print(msg, file=sys.stderr))
    print(result.folder)
    return 0
