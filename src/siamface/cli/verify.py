"""``siamface verify A B``: are these two photos the same person?
``siamface verify --pairs FILE``: the same for every pair listed in a file."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys

import numpy as np

from siamface.cli._common import (
    EXIT_BAD_INPUT,
    EXIT_NO_MATCH,
    EXIT_OK,
    EXIT_PARTIAL,
    SHOWN_REASONS,
    add_model_arguments,
    load_service,
    print_json,
    report_skipped,
)

PAIRS_HELP = """\
FILE lists one pair per line, 'imageA<TAB>imageB[<TAB>label]' ('#' comments and blank lines
are ignored; a .csv file has the header 'a,b' or 'a,b,same'); labels are 1/0, true/false or
same/different, on every line or on none. Relative paths start from the file's folder (or
--root). One line is printed per pair (--json: one JSON object per line); each distinct image
is embedded once. With labels, the accuracy over the scored pairs is printed on stderr.
Exit code with --pairs: 0 when every pair was scored, 3 when some could not be (an unreadable
image, no face, a line skipped by --skip-missing), 2 for a malformed file or a missing image;
NO MATCH verdicts do not give 1: a list is not a single verdict."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="are the faces in two images the same person?",
                       description="Are the faces in images A and B the same person? Exit "
                       "code 0 for MATCH, 1 for NO MATCH, 3 for no verdict (no face).",
                       epilog=PAIRS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", nargs="?", help="first image")
    p.add_argument("b", nargs="?", help="second image")
    p.add_argument("--pairs", metavar="FILE", default=None,
                   help="verify every pair listed in FILE instead of A B (see below)")
    p.add_argument("--root", metavar="DIR", default=None,
                   help="with --pairs: resolve relative image paths against DIR (default: "
                        "the pairs file's folder)")
    p.add_argument("--skip-missing", action="store_true",
                   help="with --pairs: leave out lines whose images do not exist (exit code 3) "
                        "instead of stopping")
    p.add_argument("--threshold", type=float, default=None,
                   help="distance threshold (default: the model's calibrated one)")
    p.add_argument("--json", action="store_true",
                   help="print the result as JSON (with --pairs: one JSON object per line)")
    p.add_argument("--save-figure", metavar="FILE", default=None,
                   help="write a picture of both crops and the verdict (PNG or JPEG)")
    add_model_arguments(p)
    p.set_defaults(run=functools.partial(run, parser=p))


def _check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser | None) -> None:
    """Exactly one of ``A B`` or ``--pairs FILE`` (argparse's usage error otherwise)."""
    problem = None
    if args.pairs is not None:
        if args.a is not None:
            problem = "give either two images A B or --pairs FILE, not both"
        elif args.save_figure:
            problem = "--save-figure draws one pair; it cannot be used with --pairs"
    else:
        if args.b is None:
            problem = ("needs two images A B, or --pairs FILE" if args.a is None
                       else "needs a second image B (or --pairs FILE instead of A B)")
        elif args.root is not None or args.skip_missing:
            problem = "--root and --skip-missing only apply to --pairs FILE"
    if problem is None:
        return
    if parser is None:  # run() called without its parser: the same message and exit code
        print(f"siamface verify: error: {problem}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)
    parser.error(problem)


def _describe(face) -> str:
    if not face.has_face:
        return f"NO FACE: {face.no_face}"
    parts = []
    if face.gender is not None:
        parts.append(f"{face.gender.label} ({face.gender.probability:.1%})")
    if not face.detected:
        used = "centre crop" if face.fallback else f"{face.crop} crop"
        parts.append(f"no face detected, used the {used} (face score {face.face_score:.2f})")
    elif face.detected_by not in (None, "detector"):
        parts.append(f"face found on a restored copy ({face.detected_by})")
    if face.restored is not None:
        parts.append(f"chip restored ({face.restored})")
    return ", ".join(parts)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    from siamface.io import load_image
    from siamface.render import verdict_text

    _check_arguments(args, parser)
    if args.pairs is not None:
        return run_pairs(args)
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


# --- verify --pairs FILE --------------------------------------------------------------------

_NO_CHIP = np.zeros((0, 0, 3), np.uint8)


class _PairScorer:
    """Scores a pairs file in order, a chunk at a time: each chunk embeds only the images not
    seen before (``batch_size`` new images per chunk), so every distinct image of the whole
    file is decoded and embedded once, and results print as they come."""

    def __init__(self, service, threshold: float | None):
        self.service = service
        self.threshold = threshold
        self.faces: dict[str, object] = {}  # path -> FaceResult (no chip) or ImageDecodeError
        self.queued: dict[str, None] = {}
        self.pending: list = []

    def add(self, pair) -> list[tuple[object, object]]:
        for path in (str(pair.a), str(pair.b)):
            if path not in self.faces:
                self.queued[path] = None
        self.pending.append(pair)
        return self.flush() if len(self.queued) >= self.service.batch_size else []

    def flush(self) -> list[tuple[object, object]]:
        """(pair, VerifyResult or ImageDecodeError) for every pending pair."""
        from siamface.errors import ImageDecodeError

        decoded: list[tuple[str, np.ndarray]] = []
        for path in self.queued:
            try:
                decoded.append((path, self.service.load_image(path)))
            except ImageDecodeError as exc:
                self.faces[path] = exc
        if decoded:
            found = self.service.faces([image for _, image in decoded])
            for (path, _), face in zip(decoded, found):
                # the chips are not needed for a list: drop them, keep the embeddings
                self.faces[path] = dataclasses.replace(face, source=path, chip=_NO_CHIP)
        self.queued.clear()
        out = []
        for pair in self.pending:
            a, b = self.faces[str(pair.a)], self.faces[str(pair.b)]
            error = a if isinstance(a, ImageDecodeError) else b if isinstance(
                b, ImageDecodeError) else None
            out.append((pair, error if error is not None
                        else self.service.compare(a, b, self.threshold)))
        self.pending = []
        return out


def _print_pair(args, pair, outcome, threshold: float, threshold_source: str,
                labelled: bool) -> None:
    from siamface.errors import ImageDecodeError
    from siamface.render import verdict_text

    failed = isinstance(outcome, ImageDecodeError)
    if args.json:
        if failed:
            data = {"status": "error", "error": str(outcome), "is_match": None,
                    "distance": None, "threshold": threshold,
                    "threshold_source": threshold_source,
                    "a": {"source": str(pair.a)}, "b": {"source": str(pair.b)}}
        else:
            data = outcome.to_dict()
        data["line"] = pair.line
        if labelled:
            data["label"] = pair.same
        sys.stdout.write(json.dumps(data) + "\n")
        return
    if failed:
        print(f"ERROR  -  {pair.a}  {pair.b}  {outcome}")
        return
    distance = "-" if outcome.distance is None else f"{outcome.distance:.4f}"
    print(f"{verdict_text(outcome)}  {distance}  {pair.a}  {pair.b}")


def run_pairs(args: argparse.Namespace) -> int:
    """``verify --pairs FILE``: one line per pair; exit 0 when all were scored, else 3."""
    from siamface.data.pairs_file import read_pair_list

    listed = read_pair_list(args.pairs, root=args.root, skip_missing=args.skip_missing)
    unscored: list[tuple[str, str]] = []
    tally = [0, 0]  # pairs scored, of which agree with their label
    threshold_note = ""
    if listed.pairs:
        service = load_service(args)
        threshold = service.threshold if args.threshold is None else float(args.threshold)
        source = service.threshold_source_text() if args.threshold is None else "user"
        threshold_note = f" at threshold {threshold:.4f} ({source})"
        scorer = _PairScorer(service, args.threshold)
        batches = (scorer.add(pair) for pair in listed.pairs)
        for batch in _chain(batches, scorer):
            for pair, outcome in batch:
                _account(pair, outcome, listed, unscored, tally)
                _print_pair(args, pair, outcome, threshold, source, listed.labelled)
            sys.stdout.flush()
    code = report_skipped("verify", listed.skipped, "line")
    if unscored:
        code = EXIT_PARTIAL
        print(f"siamface verify: {len(unscored)} of {len(listed.pairs)} pair(s) not scored "
              "(no verdict):", file=sys.stderr)
        for where, reason in unscored[:SHOWN_REASONS]:
            print(f"  {where}: {reason}", file=sys.stderr)
        if len(unscored) > SHOWN_REASONS:
            print(f"  ... and {len(unscored) - SHOWN_REASONS} more", file=sys.stderr)
    if listed.labelled:
        scored, correct = tally
        print("siamface verify: accuracy: no pair was scored" if not scored else
              f"siamface verify: accuracy {correct / scored:.2%}: {correct} of {scored} scored "
              f"pair(s) agree with their label{threshold_note}", file=sys.stderr)
    return code


def _chain(batches, scorer: _PairScorer):
    """The results of every ``add``, then of the final ``flush``."""
    yield from batches
    yield scorer.flush()


def _account(pair, outcome, listed, unscored: list[tuple[str, str]], tally: list[int]) -> None:
    """Count a scored pair (and whether it agrees with its label); note an unscored one."""
    from siamface.errors import ImageDecodeError

    where = f"{listed.source}:{pair.line}"
    if isinstance(outcome, ImageDecodeError):
        unscored.append((where, str(outcome)))
    elif outcome.is_match is None:
        face = outcome.a if not outcome.a.has_face else outcome.b
        unscored.append((where, f"no face in {face.source}: {face.no_face}"))
    else:
        tally[0] += 1
        tally[1] += int(listed.labelled and outcome.is_match == pair.same)
