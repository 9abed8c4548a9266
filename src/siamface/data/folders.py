"""Generic layouts: person folders, a CSV manifest, and a flat folder.

* Person folders: ``<root>/<person>/*.jpg`` (plus ``<person>/distortion/*.jpg``, tagged), with
  an optional ``<root>/genders.csv`` (header ``person,gender``).
* CSV manifest: header with ``path`` and ``person_id`` and optionally ``gender`` (relative
  paths are relative to the manifest's folder).
* Flat folder: ``<root>/*.jpg`` where the person id is the file name up to the first ``_`` or
  ``-`` (``alice_01.jpg``, ``alice-2.jpg`` -> ``alice``); optional ``genders.csv`` beside them.

Gender values follow ``parse_gender``: male/female/m/f/man/woman/0/1 (any case); empty means
unknown; anything else is a ``DatasetError`` naming the file and line.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

from siamface.data.facecom import GENERIC_DISTORTION, distortion_tag
from siamface.data.records import (
    FaceDataset,
    FaceRecord,
    parse_gender,
    person_folder_images,
)
from siamface.errors import DatasetError
from siamface.io import find_images

__all__ = [
    "GENDERS_CSV",
    "flat_person_id",
    "load_flat_folder",
    "load_manifest",
    "load_person_folders",
    "read_genders_csv",
]

log = logging.getLogger(__name__)
GENDERS_CSV = "genders.csv"
_FLAT_SPLIT = re.compile(r"[_-]")


def _require_dir(root: Path, what: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"{what} {root} not found or not a folder")


def _read_csv(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a CSV with a header, as (line number, row) pairs; header names are matched
    case-insensitively and must include ``required``."""
    if not path.is_file():
        raise DatasetError(f"CSV file {path} not found")
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"CSV file {path} is empty; expected a header {','.join(required)}")
        names = [h.strip().lower() for h in header]
        missing = [c for c in required if c not in names]
        if missing:
            raise DatasetError(
                f"CSV file {path} lacks column(s) {', '.join(missing)}; header is "
                f"{','.join(header)!r}, expected at least {','.join(required)}"
            )
        rows = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            rows.append((reader.line_num, {n: (row[i].strip() if i < len(row) else "")
                                           for i, n in enumerate(names)}))
    return rows


def read_genders_csv(path: str | os.PathLike[str]) -> dict[str, str | None]:
    """``person,gender`` CSV -> person id -> ``"male"``/``"female"``/None."""
    path = Path(path)
    genders: dict[str, str | None] = {}
    for line, row in _read_csv(path, ("person", "gender")):
        genders[row["person"]] = parse_gender(row["gender"], source=f"{path}:{line}")
    return genders


def _optional_genders(root: Path, genders_csv: str | os.PathLike[str] | None) -> dict:
    if genders_csv is None:
        return {}
    path = Path(genders_csv)
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        if Path(genders_csv).name == GENDERS_CSV and not Path(genders_csv).is_absolute():
            return {}  # the default file is optional
        raise DatasetError(f"genders file {path} not found")
    return read_genders_csv(path)


def _warn_unused(genders: dict, persons: set[str], source: str) -> None:
    unused = sorted(set(genders) - persons)
    if unused:
        log.warning("%s names %d person(s) with no images, e.g. %s", source, len(unused),
                    ", ".join(unused[:5]))


def load_person_folders(
    root: str | os.PathLike[str], *, genders_csv: str | os.PathLike[str] | None = GENDERS_CSV
) -> FaceDataset:
    """One person per sub-folder of ``root``; images directly inside are originals, those in
    ``<person>/distortion/`` are tagged from their name. ``genders_csv`` (relative to
    ``root``; the default is optional, None skips it) gives genders; others stay None."""
    root = Path(root)
    _require_dir(root, "dataset folder")
    genders = _optional_genders(root, genders_csv)
    records: list[FaceRecord] = []
    persons: set[str] = set()
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
        person = person_dir.name
        originals, distorted = person_folder_images(person_dir)
        persons.add(person)
        gender = genders.get(person)
        records.extend(FaceRecord(p, person, gender, None) for p in originals)
        records.extend(
            FaceRecord(p, person, gender, distortion_tag(p.name) or GENERIC_DISTORTION)
            for p in distorted
        )
    if not records:
        raise DatasetError(
            f"{root} has no person folders; expected <root>/<person>/*.jpg "
            f"(for images directly in {root} use the flat-folder layout)"
        )
    _warn_unused(genders, persons, str(genders_csv))
    return FaceDataset(records, name=f"person folders ({root})")


def load_manifest(
    path: str | os.PathLike[str], *, check_files: bool = True
) -> FaceDataset:
    """A CSV manifest with columns ``path``, ``person_id`` and optionally ``gender`` (and
    ``distortion``). Relative paths are resolved against the manifest's folder; with
    ``check_files`` missing images raise ``DatasetError`` listing a few."""
    path = Path(path)
    base = path.parent
    records: list[FaceRecord] = []
    missing: list[str] = []
    for line, row in _read_csv(path, ("path", "person_id")):
        if not row["path"] or not row["person_id"]:
            raise DatasetError(f"{path}:{line}: path and person_id must not be empty")
        image = Path(row["path"])
        if not image.is_absolute():
            image = base / image
        if check_files and not image.is_file():
            missing.append(str(image))
        records.append(FaceRecord(
            image,
            row["person_id"],
            parse_gender(row.get("gender"), source=f"{path}:{line}"),
            row.get("distortion") or None,
        ))
    if missing:
        raise DatasetError(
            f"manifest {path} lists {len(missing)} missing image(s), e.g. "
            f"{', '.join(missing[:3])}"
        )
    if not records:
        raise DatasetError(f"manifest {path} has a header but no rows")
    return FaceDataset(records, name=f"manifest ({path})")


def flat_person_id(filename: str) -> str:
    """Person id under the flat-folder rule: the file name up to the first ``_`` or ``-``
    (the whole stem when it has neither)."""
    stem = Path(filename).stem
    return _FLAT_SPLIT.split(stem, maxsplit=1)[0] or stem


def load_flat_folder(
    root: str | os.PathLike[str], *, genders_csv: str | os.PathLike[str] | None = GENDERS_CSV
) -> FaceDataset:
    """Images directly in ``root``; person id by ``flat_person_id``; optional genders CSV."""
    root = Path(root)
    _require_dir(root, "dataset folder")
    paths = find_images(root, recursive=False)
    if not paths:
        raise DatasetError(f"{root} has no images directly inside (*.jpg, *.png, ...)")
    genders = _optional_genders(root, genders_csv)
    records = [FaceRecord(p, flat_person_id(p.name), None, None) for p in paths]
    records = [FaceRecord(r.path, r.person_id, genders.get(r.person_id), None) for r in records]
    _warn_unused(genders, {r.person_id for r in records}, str(genders_csv))
    return FaceDataset(records, name=f"flat folder ({root})")
