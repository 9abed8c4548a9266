"""A pairs file a user writes: which images to verify against which, one pair per line.

Plain text (TAB-separated)::

    # comments and blank lines are ignored
    alice/1.jpg<TAB>alice/2.jpg<TAB>same
    alice/1.jpg<TAB>bob/1.jpg<TAB>different

or, for a file ending in ``.csv``, CSV with a header ``a,b`` or ``a,b,same``::

    a,b,same
    alice/1.jpg,alice/2.jpg,1

The label is optional; either every line has one or none does. Labels: ``1``/``0``,
``true``/``false``, ``same``/``different`` (any case). Relative image paths are resolved
against ``root``, or else the pairs file's folder. Every error names ``FILE:LINE`` (the real
1-based line of the file) and says what was expected.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from siamface.errors import DatasetError

__all__ = ["PAIR_LABELS", "ListedPair", "PairList", "read_pair_list"]

PAIR_LABELS: dict[str, bool] = {
    "1": True, "true": True, "same": True,
    "0": False, "false": False, "different": False,
}
"""The label words of a pairs file (case-insensitive) and what they mean (same person?)."""

_TSV_FORMAT = "imageA<TAB>imageB[<TAB>label]"
_CSV_HEADERS = (("a", "b"), ("a", "b", "same"))


class ListedPair(NamedTuple):
    """One line of a pairs file: the two image paths (resolved), the label (``None`` when the
    file has none) and the line number in the file."""

    a: Path
    b: Path
    same: bool | None
    line: int


@dataclass
class PairList:
    """What :func:`read_pair_list` read: ``pairs`` in file order; ``skipped`` lines (with
    ``skip_missing``) as (``"FILE:LINE"``, reason); ``labelled`` when the file has labels."""

    source: Path
    pairs: list[ListedPair] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    labelled: bool = False

    def __len__(self) -> int:
        return len(self.pairs)

    def images(self) -> list[Path]:
        """Every distinct image of the pairs, in order of first appearance."""
        return list(dict.fromkeys(p for pair in self.pairs for p in (pair.a, pair.b)))


def _label(text: str, where: str) -> bool:
    value = PAIR_LABELS.get(text.strip().lower())
    if value is None:
        raise DatasetError(f"{where}: bad label {text!r}; expected one of "
                           f"{', '.join(PAIR_LABELS)} (or no label on any line)")
    return value


def _rows(path: Path, is_csv: bool):
    """(line number, fields) for every line that is not blank or a ``#`` comment; for CSV,
    the header row is checked and not yielded (its width comes first, as ``None``)."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            lines = list(enumerate(fh, 1))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                           "save the pairs file as UTF-8") from None
    header_seen = not is_csv
    for number, line in lines:
        text = line.rstrip("\r\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if is_csv:
            fields = [f.strip() for f in next(csv.reader([text]))]
        else:
            fields = [f.strip() for f in text.split("\t")]
        if not header_seen:
            header = tuple(f.lower() for f in fields)
            if header not in _CSV_HEADERS:
                raise DatasetError(
                    f"{path}:{number}: a .csv pairs file starts with the header 'a,b' or "
                    f"'a,b,same', got {text!r}")
            header_seen = True
            yield number, header
            continue
        yield number, fields


def _check_width(fields: list[str], where: str, is_csv: bool, text_hint: str) -> None:
    if is_csv:
        return
    if len(fields) in (2, 3) and all(fields):
        return
    if len(fields) == 1 and len(fields[0].split()) in (2, 3):
        hint = "; the fields must be separated by TABs, not spaces"
    elif not all(fields) and len(fields) in (2, 3):
        hint = "; a field is empty (two TABs in a row?)"
    else:
        hint = ""
    raise DatasetError(f"{where}: expected 2 or 3 TAB-separated fields ({_TSV_FORMAT}), "
                       f"got {len(fields)}: {text_hint!r}{hint}")


def _missing(path: Path) -> str | None:
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path} is a folder, not an image file"
    return f"image {path} not found"


def read_pair_list(path: str | os.PathLike, *, root: str | os.PathLike | None = None,
                   skip_missing: bool = False) -> PairList:
    """Read a pairs file (see the module docstring). Relative image paths are resolved
    against ``root``, else the pairs file's folder. A malformed line or, unless
    ``skip_missing``, a missing image raises :class:`DatasetError` ``"FILE:LINE: reason"``;
    with ``skip_missing`` the lines whose images are missing are left out and listed in
    :attr:`PairList.skipped` instead."""
    path = Path(path)
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "not found"
        raise DatasetError(f"pairs file {path} {state}; give a text file with one pair per "
                           f"line: {_TSV_FORMAT}")
    is_csv = path.suffix.lower() == ".csv"
    base = Path(root) if root is not None else path.parent
    if root is not None and not base.is_dir():
        raise DatasetError(f"image root {base} is not a folder; pass the folder the pairs "
                           "file's relative paths start from")
    result = PairList(source=path)
    width: int | None = None  # 2 or 3 fields: fixed by the CSV header or by the first line
    first_line = 0
    for number, fields in _rows(path, is_csv):
        where = f"{path}:{number}"
        if is_csv and width is None:  # the header
            width = len(fields)
            first_line = number
            continue
        _check_width(fields, where, is_csv, "\t".join(fields))
        if is_csv and (len(fields) != width or not all(fields)):
            header = ",".join(_CSV_HEADERS[width - 2])
            raise DatasetError(f"{where}: expected {width} non-empty comma-separated fields "
                               f"({header}, as the header on line {first_line} says), got "
                               f"{len(fields)}: {','.join(fields)!r}")
        if width is None:
            width, first_line = len(fields), number
        elif len(fields) != width:
            this, that = ("has a", "has none") if len(fields) == 3 else ("has no", "has one")
            raise DatasetError(f"{where}: this line {this} label but line {first_line} {that}; "
                               "label every line or none")
        same = _label(fields[2], where) if width == 3 else None
        a, b = (base / fields[0], base / fields[1])  # an absolute field replaces base
        reasons = [r for r in (_missing(a), _missing(b)) if r is not None]
        if reasons:
            reason = " and ".join(reasons)
            if not skip_missing:
                raise DatasetError(f"{where}: {reason} (relative paths start from {base}); "
                                   "fix the line, or skip such lines (--skip-missing)")
            result.skipped.append((where, reason))
            continue
        result.pairs.append(ListedPair(a, b, same, number))
    result.labelled = width == 3
    if not result.pairs and not result.skipped:
        raise DatasetError(f"pairs file {path} holds no pairs; write one pair per line: "
                           + ("a,b[,same] after the header" if is_csv else _TSV_FORMAT))
    return result
