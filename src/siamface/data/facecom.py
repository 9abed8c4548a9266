"""FACECOM layout.

::

    <root>/Task_A/{train,val}/{male,female}/*.jpg              gender task
    <root>/Task_B/{train,val}/<person>/*.jpg                   identity task, originals
    <root>/Task_B/{train,val}/<person>/distortion/*.jpg        the same faces, distorted

A Task_B person's gender comes from the Task_A file names: person id = file stem without a
distortion suffix and without a trailing ``_NNNN``. A person found under both ``male`` and
``female`` in Task_A is left unlabelled (logged), as is a person Task_A does not mention.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from siamface.data.records import (
    FaceDataset,
    FaceRecord,
    person_folder_images,
)
from siamface.errors import DatasetError, UnknownNameError
from siamface.io import find_images

__all__ = [
    "DISTORTION_TAGS",
    "FACECOM_TAGS",
    "GENERIC_DISTORTION",
    "SPLITS",
    "TASKS",
    "distortion_tag",
    "facecom_gender_lookup",
    "facecom_person_id",
    "load_facecom",
    "load_facecom_gender",
    "load_facecom_identities",
]

log = logging.getLogger(__name__)

# FACECOM's own suffixes, e.g. ``Aaron_Eckhart_0001_blurred.jpg``.
FACECOM_TAGS: tuple[str, ...] = (
    "blurred", "foggy", "rainy", "lowlight", "noisy", "resized", "sunny",
)
# siamface.augment distortion kind -> the FACECOM tag it imitates. File names written with a
# kind suffix (``_motion_blur``) are read back with the tag (``"blurred"``).
DISTORTION_TAGS: dict[str, str] = {
    "motion_blur": "blurred",
    "fog": "foggy",
    "rain": "rainy",
    "low_light": "lowlight",
    "noise": "noisy",
    "downscale": "resized",
    "sun_glare": "sunny",
}
GENERIC_DISTORTION = "distortion"
SPLITS = ("train", "val")
TASKS = ("identity", "gender")
_SUFFIX_TO_TAG = {**{t: t for t in FACECOM_TAGS}, **DISTORTION_TAGS}
_SUFFIX_RE = re.compile(
    r"_(" + "|".join(sorted(map(re.escape, _SUFFIX_TO_TAG), key=len, reverse=True)) + r")$",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(r"_\d+$")


def distortion_tag(filename: str) -> str | None:
    """The FACECOM distortion tag in a file name (``x_0001_foggy.jpg`` -> ``"foggy"``,
    ``x_0001_motion_blur.jpg`` -> ``"blurred"``), or None when it has none."""
    match = _SUFFIX_RE.search(Path(filename).stem)
    return _SUFFIX_TO_TAG[match.group(1).lower()] if match else None


def facecom_person_id(filename: str) -> str:
    """Person id of a FACECOM file: its stem without a distortion suffix and a trailing
    ``_NNNN`` (``Aaron_Eckhart_0001_foggy.jpg`` -> ``"Aaron_Eckhart"``)."""
    stem = _SUFFIX_RE.sub("", Path(filename).stem)
    return _NUMBER_RE.sub("", stem) or stem


def _child(folder: Path, name: str) -> Path:
    """``folder/name``, matching the name case-insensitively; DatasetError if missing."""
    exact = folder / name
    if exact.is_dir():
        return exact
    if folder.is_dir():
        for entry in os.scandir(folder):
            if entry.is_dir() and entry.name.lower() == name.lower():
                return Path(entry.path)
        present = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    else:
        present = []
    raise DatasetError(
        f"FACECOM folder {exact} not found (expected <root>/Task_A/{{train,val}}/{{male,female}} "
        f"and <root>/Task_B/{{train,val}}/<person>); folders present in {folder}: "
        f"{', '.join(present) or 'none'}"
    )


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise UnknownNameError("FACECOM split", split, SPLITS)


def load_facecom_gender(root: str | os.PathLike[str], split: str = "train") -> FaceDataset:
    """Task_A as a dataset: gender from the folder, person id from the file name."""
    _check_split(split)
    base = _child(_child(Path(root), "Task_A"), split)
    records: list[FaceRecord] = []
    folders = {}
    for gender in ("male", "female"):
        try:
            folders[gender] = _child(base, gender)
        except DatasetError:
            continue  # one gender folder may be absent; both absent is an error below
    if not folders:
        _child(base, "male")  # raises, listing what is there
    for gender, folder in folders.items():
        for path in find_images(folder, recursive=False):
            records.append(
                FaceRecord(path, facecom_person_id(path.name), gender, distortion_tag(path.name))
            )
    return FaceDataset(records, name=f"FACECOM Task_A/{split} ({base})")


def facecom_gender_lookup(root: str | os.PathLike[str]) -> dict[str, str | None]:
    """Person id -> gender from every Task_A split present; conflicting persons map to None."""
    task_a = _child(Path(root), "Task_A")
    seen: dict[str, set[str]] = {}
    for split_dir in sorted(p for p in task_a.iterdir() if p.is_dir()):
        for gender in ("male", "female"):
            folder = split_dir / gender
            if not folder.is_dir():
                continue
            for path in find_images(folder, recursive=False):
                seen.setdefault(facecom_person_id(path.name), set()).add(gender)
    lookup: dict[str, str | None] = {}
    for person, genders in seen.items():
        if len(genders) > 1:
            log.warning("FACECOM person %s is under both male and female; left unlabelled", person)
            lookup[person] = None
        else:
            lookup[person] = next(iter(genders))
    return lookup


def load_facecom_identities(
    root: str | os.PathLike[str], split: str = "train", *, with_gender: bool = True
) -> FaceDataset:
    """Task_B as a dataset: one person per folder, originals plus ``distortion/`` images,
    gender from Task_A when ``with_gender`` and Task_A is present (else None)."""
    _check_split(split)
    root = Path(root)
    base = _child(_child(root, "Task_B"), split)
    lookup: dict[str, str | None] = {}
    if with_gender:
        try:
            lookup = facecom_gender_lookup(root)
        except DatasetError:
            log.warning("FACECOM Task_A not found under %s; Task_B genders left unknown", root)
    records: list[FaceRecord] = []
    person_dirs = sorted(p for p in base.iterdir() if p.is_dir())
    for person_dir in person_dirs:
        person = person_dir.name
        gender = lookup.get(person)
        originals, distorted = person_folder_images(person_dir)
        records.extend(FaceRecord(p, person, gender, None) for p in originals)
        records.extend(
            FaceRecord(p, person, gender, distortion_tag(p.name) or GENERIC_DISTORTION)
            for p in distorted
        )
    return FaceDataset(records, name=f"FACECOM Task_B/{split} ({base})")


def load_facecom(
    root: str | os.PathLike[str], split: str = "train", task: str = "identity"
) -> FaceDataset:
    """FACECOM ``split`` for ``task`` ``"identity"`` (Task_B, genders from Task_A) or
    ``"gender"`` (Task_A)."""
    if task == "identity":
        return load_facecom_identities(root, split)
    if task == "gender":
        return load_facecom_gender(root, split)
    raise UnknownNameError("FACECOM task", task, TASKS)
