"""Entry point: ``siamface <command> ...``. Each command is a module with ``add_parser`` and
``run``; ``main(argv)`` returns an exit code so tests call it in-process."""

from __future__ import annotations

import argparse
import importlib
import sys

from siamface.errors import SiamfaceError

COMMANDS = ("verify", "analyze", "embed", "prepare", "distort", "train", "weights")
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siamface",
        description="Face verification and gender classification with one Siamese network.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"siamface.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"siamface.cli.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or EXIT_OK)
    except SiamfaceError as exc:
        print(f"siamface {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"siamface {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
