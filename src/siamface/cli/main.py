"""Entry point: ``siamface <command> ...``. Each command is a module with ``add_parser`` and
``run``; ``main(argv)`` returns an exit code so tests call it in-process."""

from __future__ import annotations

import argparse
import importlib
import sys

from siamface.cli._common import EXIT_BAD_INPUT, EXIT_OK
from siamface.errors import SiamfaceError

COMMANDS = {
    "verify": "are the faces in two images the same person?",
    "analyze": "gender and face location for each image",
    "embed": "embed every image under a folder into an .npz file",
    "prepare": "detect and crop every image of a dataset into a crop cache",
    "distort": "write a deterministic distorted copy of a dataset",
    "identify": "one-to-many: rank gallery persons for each probe image",
    "evaluate": "figures, dashboard and HTML report of a model on a dataset",
    "calibrate": "choose a verification threshold on a dataset and write a checkpoint copy",
    "cache": "where face crops and embeddings are cached; info or clear",
    "train": "two-stage training of the heads and the top backbone layers",
    "weights": "list, locate or explicitly download backbone weights",
    "export": "export a model (and MTCNN) to ONNX for --runtime onnx",
    "bench": "speed of each stage of the face pipeline on a folder of images",
    "serve": "web app and REST API (needs the web extra)",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser of ``command``; the other commands get a stub so the help still lists
    them, and only the chosen command's module is imported (a fast start)."""
    parser = argparse.ArgumentParser(
        prog="siamface",
        description="Face verification and gender classification with one Siamese network.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        if name == command:
            importlib.import_module(f"siamface.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _chosen_command(argv: list[str]) -> str | None:
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen_command(argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except SiamfaceError as exc:
        print(f"siamface {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file we were asked to write, or a folder we could not read
        name = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"siamface {args.command}: error:{name} {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"siamface {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
