"""Labeled Faces in the Wild: images, per-image gender lists and the pair protocols.

::

    <root>/images/<Name>/<Name>_NNNN.jpg
    <root>/male_names.txt, female_names.txt     one ``Name_NNNN.jpg`` per line (CRLF)
    <root>/pairs.txt                            View 2: ``10<TAB>300`` then 10 folds of
                                                300 matched + 300 mismatched lines
    <root>/pairsDevTrain.txt, pairsDevTest.txt  View 1: ``N`` then N matched + N mismatched

Gender is per image. The female list wins where an image is in both lists; images in neither
list stay unlabelled (None).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from siamface.data.records import FaceDataset, FaceRecord
from siamface.errors import DatasetError, UnknownNameError
from siamface.io import find_images

__all__ = [
    "LFWPair",
    "fold_persons",
    "lfw_image_path",
    "load_lfw",
    "pair_persons",
    "read_lfw_genders",
    "read_pairs",
    "read_view1",
    "read_view2",
]

_VIEW1_FILES = {"train": "pairsDevTrain.txt", "test": "pairsDevTest.txt"}


def lfw_image_path(root: str | os.PathLike[str], name: str, index: int) -> Path:
    """``<root>/images/<name>/<name>_<index:04d>.jpg``."""
    return Path(root) / "images" / name / f"{name}_{index:04d}.jpg"


@dataclass(frozen=True)
class LFWPair:
    """One protocol pair: image ``index1`` of ``name1`` and ``index2`` of ``name2``
    (1-based, as in the files); ``same`` for a matched pair; ``fold`` 0-based."""

    name1: str
    index1: int
    name2: str
    index2: int
    same: bool
    fold: int

    def paths(self, root: str | os.PathLike[str]) -> tuple[Path, Path]:
        """The two image paths under ``root`` (the LFW folder holding ``images/``)."""
        return lfw_image_path(root, self.name1, self.index1), lfw_image_path(
            root, self.name2, self.index2
        )


def _read_name_list(path: Path) -> set[str]:
    with open(path, encoding="utf-8", newline="") as fh:
        return {Path(line.strip()).stem for line in fh if line.strip()}


def read_lfw_genders(root: str | os.PathLike[str]) -> dict[str, str]:
    """Image stem (``Name_NNNN``) -> gender from ``male_names.txt`` / ``female_names.txt``;
    the female list wins on conflict. Missing lists raise ``DatasetError``."""
    root = Path(root)
    paths = {g: root / f"{g}_names.txt" for g in ("male", "female")}
    for path in paths.values():
        if not path.is_file():
            raise DatasetError(
                f"LFW gender list {path} not found; pass genders=False to load LFW unlabelled"
            )
    genders = {stem: "male" for stem in _read_name_list(paths["male"])}
    genders.update({stem: "female" for stem in _read_name_list(paths["female"])})
    return genders


def load_lfw(root: str | os.PathLike[str], *, genders: bool = True) -> FaceDataset:
    """All LFW images as a dataset (person = folder name), with per-image gender when
    ``genders`` (images in neither list stay None)."""
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise DatasetError(
            f"LFW images folder {images} not found (expected <root>/images/<Name>/<Name>_NNNN.jpg)"
        )
    lookup = read_lfw_genders(root) if genders else {}
    by_person: dict[str, list[Path]] = {}
    for path in find_images(images):  # one walk, sorted by person then file
        person = path.parent
        if person.parent != images:
            raise DatasetError(f"LFW image {path} is not directly inside a person folder of "
                               f"{images} (expected <root>/images/<Name>/<Name>_NNNN.jpg)")
        by_person.setdefault(person.name, []).append(path)
    with os.scandir(images) as entries:  # no stat per folder (LFW: 5,749)
        empty = sorted(e.name for e in entries if not e.name.startswith(".") and e.is_dir()
                       and e.name not in by_person)
    if empty:
        raise DatasetError(f"LFW person folder {images / empty[0]} has no images")
    records: list[FaceRecord] = [
        FaceRecord(p, person, lookup.get(p.stem), None)
        for person, paths in by_person.items() for p in paths
    ]
    return FaceDataset(records, name=f"LFW ({root})")


def _parse_pair_line(parts: list[str], source: str, fold: int, same: bool) -> LFWPair:
    try:
        if same and len(parts) == 3:
            return LFWPair(parts[0], int(parts[1]), parts[0], int(parts[2]), True, fold)
        if not same and len(parts) == 4:
            return LFWPair(parts[0], int(parts[1]), parts[2], int(parts[3]), False, fold)
    except ValueError:
        pass
    expected = "name<TAB>i<TAB>j" if same else "name1<TAB>i<TAB>name2<TAB>j"
    kind = "matched" if same else "mismatched"
    got = " ".join(parts)
    raise DatasetError(f"{source}: expected a {kind} pair line '{expected}', got {got!r}")


def read_pairs(path: str | os.PathLike[str]) -> list[LFWPair]:
    """Read an LFW pairs file: ``pairs.txt`` (header ``folds<TAB>n``: each fold n matched
    then n mismatched) or a View 1 file (header ``n``: one fold)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"LFW pairs file {path} not found")
    with open(path, encoding="utf-8") as fh:
        # (1-based line number in the file, fields): blank lines are skipped but still counted
        lines = [(number, line.split()) for number, line in enumerate(fh, 1) if line.strip()]
    if not lines:
        raise DatasetError(f"LFW pairs file {path} is empty")
    header_line, header = lines[0]
    try:
        folds, per_side = (int(header[0]), int(header[1])) if len(header) == 2 else (
            1, int(header[0]))
    except (ValueError, IndexError):
        raise DatasetError(
            f"{path}:{header_line}: first line must be 'folds<TAB>n' or 'n', got "
            f"{' '.join(header)!r}"
        ) from None
    expected = folds * 2 * per_side
    if len(lines) - 1 != expected:
        raise DatasetError(
            f"{path}: header announces {folds} fold(s) of {per_side} matched + {per_side} "
            f"mismatched pairs ({expected} lines) but the file has {len(lines) - 1}"
        )
    pairs: list[LFWPair] = []
    row = 1
    for fold in range(folds):
        for same in (True, False):
            for _ in range(per_side):
                number, parts = lines[row]
                pairs.append(_parse_pair_line(parts, f"{path}:{number}", fold, same))
                row += 1
    return pairs


def read_view2(root: str | os.PathLike[str]) -> list[LFWPair]:
    """The 6,000 View 2 pairs of ``<root>/pairs.txt`` with their fold (0-9)."""
    return read_pairs(Path(root) / "pairs.txt")


def read_view1(root: str | os.PathLike[str], part: str = "test") -> list[LFWPair]:
    """View 1 pairs: ``part`` ``"train"`` (pairsDevTrain.txt) or ``"test"`` (pairsDevTest.txt)."""
    if part not in _VIEW1_FILES:
        raise UnknownNameError("LFW View 1 part", part, tuple(_VIEW1_FILES))
    return read_pairs(Path(root) / _VIEW1_FILES[part])


def pair_persons(pairs: list[LFWPair]) -> set[str]:
    """Every person named in ``pairs``."""
    return {p.name1 for p in pairs} | {p.name2 for p in pairs}


def fold_persons(pairs: list[LFWPair], fold: int) -> set[str]:
    """The persons named in the pairs of ``fold``; DatasetError for a fold not in ``pairs``."""
    folds = sorted({p.fold for p in pairs})
    if fold not in folds:
        raise DatasetError(f"fold {fold} not in the pairs; valid folds: {folds}")
    return pair_persons([p for p in pairs if p.fold == fold])

