"""Gender data labelled by group, without identities: UTKFace and FairFace.

Every image is its own person (``utkface:<name>``, ``fairface:<file>``): two images of these
sets are taken to show different people, which is what same-group impostor pairs need. Each
record carries the groups ``ethnicity`` and ``age_band`` (FairFace's bands; UTKFace's exact
ages are put in the same bands). The labels serve evaluation and balanced training only.

* UTKFace: ``<root>/**/<age>_<gender>_<race>_<date>.jpg[.chip.jpg]``, gender 0 male / 1 female,
  race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Other; a name without the race field has no
  ethnicity.
* FairFace: ``fairface_label_<split>.csv`` (``file,age,gender,race[,...]``) beside the
  ``<split>/`` image folders (or beside a ``fair_face/`` folder that holds them). Age bands
  mangled into dates by a spreadsheet (``03-Sep``, ``Oct-19``) are read as ``3-9``, ``10-19``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from siamface.data.folders import _read_csv
from siamface.data.records import FaceDataset, FaceRecord, parse_gender
from siamface.errors import DatasetError
from siamface.io import IMAGE_EXTENSIONS, find_images

__all__ = [
    "AGE_BANDS",
    "CHILD_BANDS",
    "FAIRFACE_ETHNICITIES",
    "UTKFACE_ETHNICITIES",
    "age_band",
    "fairface_csv",
    "load_fairface",
    "load_utkface",
    "looks_like_utkface",
]

AGE_BANDS = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
CHILD_BANDS = ("0-2", "3-9")  # reported apart: FairFace's bands do not split at 13
_BAND_ALIASES = {"03-sep": "3-9", "sep-03": "3-9", "oct-19": "10-19", "19-oct": "10-19",
                 "more than 70": "70+", "70-": "70+"}
UTKFACE_ETHNICITIES = ("White", "Black", "Asian", "Indian", "Other")
FAIRFACE_ETHNICITIES = ("White", "Black", "East Asian", "Southeast Asian", "Indian",
                        "Middle Eastern", "Latino_Hispanic")
_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_(?:([0-4])_)?\d+")
_UTK_GENDERS = {"0": "male", "1": "female"}


def age_band(age: int) -> str:
    """FairFace's age band of an age in years."""
    if age < 0:
        raise ValueError(f"age must be >= 0, got {age}")
    if age <= 2:
        return "0-2"
    if age <= 9:
        return "3-9"
    if age >= 70:
        return "70+"
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def _normalise_band(value: str, source: str) -> str:
    text = value.strip()
    band = _BAND_ALIASES.get(text.lower(), text)
    if band not in AGE_BANDS:
        raise DatasetError(f"{source}: unknown age band {value!r}; valid: {', '.join(AGE_BANDS)}")
    return band


def _first_image_names(root: Path, n: int) -> list[str]:
    """Names of up to ``n`` images under ``root``, stopping there (no walk of a whole tree)."""
    names: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names += [f for f in sorted(files)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
        if len(names) >= n:
            break
    return names[:n]


def looks_like_utkface(root: Path, sample: int = 20) -> bool:
    """Whether the first images under ``root`` are named as UTKFace names them."""
    names = _first_image_names(root, sample)
    return bool(names) and all(_UTK_NAME.match(n) for n in names)


def load_utkface(root: str | os.PathLike[str]) -> FaceDataset:
    """Every image under ``root`` (recursively) named ``age_gender_race_date...``; a name
    that does not follow the pattern is a :class:`DatasetError` naming the file."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"UTKFace folder {root} not found or not a folder")
    paths = find_images(root, recursive=True)
    if not paths:
        raise DatasetError(f"{root} has no images; expected UTKFace's age_gender_race_date.jpg")
    records = []
    for path in paths:
        match = _UTK_NAME.match(path.name)
        if match is None:
            raise DatasetError(
                f"{path}: not a UTKFace name; expected <age>_<gender 0|1>_<race 0-4>_<date>.jpg")
        age, gender, race = match.groups()
        groups = {"age_band": age_band(int(age))}
        if race is not None:
            groups["ethnicity"] = UTKFACE_ETHNICITIES[int(race)]
        records.append(FaceRecord(path, f"utkface:{path.name}", _UTK_GENDERS[gender], None,
                                  groups))
    return FaceDataset(records, name=f"UTKFace ({root})")


def fairface_csv(root: Path, split: str) -> Path:
    """The label CSV of ``split`` in a FairFace folder."""
    path = root / f"fairface_label_{split}.csv"
    if not path.is_file():
        found = sorted(p.name for p in root.glob("fairface_label_*.csv"))
        raise DatasetError(
            f"FairFace folder {root} has no {path.name}"
            + (f"; it has {', '.join(found)}" if found else
               " (expected fairface_label_train.csv / fairface_label_val.csv)"))
    return path


def _image_base(root: Path, first_file: str) -> Path:
    for base in (root, root / "fair_face"):
        if (base / first_file).is_file():
            return base
    return root


def load_fairface(source: str | os.PathLike[str], split: str = "val", *,
                  check_files: bool = True) -> FaceDataset:
    """FairFace from its folder (``split`` picks ``fairface_label_<split>.csv``) or from one
    label CSV. Malformed rows fail with the file and line; with ``check_files`` missing
    images fail listing a few."""
    source = Path(source)
    if source.is_file():
        csv_path, root = source, source.parent
    elif source.is_dir():
        root = source
        csv_path = fairface_csv(root, split)
    else:
        raise DatasetError(f"FairFace folder or label CSV {source} not found")
    rows = _read_csv(csv_path, ("file", "age", "gender", "race"))
    if not rows:
        raise DatasetError(f"{csv_path} has a header but no rows")
    base = _image_base(root, rows[0][1]["file"])
    records, missing = [], []
    for line, row in rows:
        where = f"{csv_path}:{line}"
        if not row["file"]:
            raise DatasetError(f"{where}: the file column is empty")
        race = row["race"]
        if race not in FAIRFACE_ETHNICITIES:
            raise DatasetError(f"{where}: unknown race {race!r}; valid: "
                               f"{', '.join(FAIRFACE_ETHNICITIES)}")
        gender = parse_gender(row["gender"], source=where)
        band = _normalise_band(row["age"], where)
        image = base / row["file"]
        if check_files and not image.is_file():
            missing.append(str(image))
        records.append(FaceRecord(image, f"fairface:{row['file']}", gender, None,
                                  {"ethnicity": race, "age_band": band}))
    if missing:
        raise DatasetError(f"{csv_path} lists {len(missing)} missing image(s), e.g. "
                           f"{', '.join(missing[:3])}")
    return FaceDataset(records, name=f"FairFace {csv_path.stem.rsplit('_', 1)[-1]} ({root})")
