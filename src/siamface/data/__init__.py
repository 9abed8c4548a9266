"""Dataset layouts (FACECOM, LFW, person folders, CSV manifest, flat folder) loaded into one
``FaceDataset`` of ``FaceRecord``; person-wise splits; pairs; identity-balanced samplers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamface.data.facecom import (
    DISTORTION_TAGS,
    FACECOM_TAGS,
    distortion_tag,
    facecom_gender_lookup,
    facecom_person_id,
    load_facecom,
    load_facecom_gender,
    load_facecom_identities,
)
from siamface.data.folders import (
    flat_person_id,
    load_flat_folder,
    load_manifest,
    load_person_folders,
    read_genders_csv,
)
from siamface.data.lfw import (
    LFWPair,
    fold_persons,
    lfw_image_path,
    load_lfw,
    read_lfw_genders,
    read_pairs,
    read_view1,
    read_view2,
)
from siamface.data.pairs import IndexPair, PairSampler, evaluation_pairs, index_lfw_pairs
from siamface.data.pairs_file import PAIR_LABELS, ListedPair, PairList, read_pair_list
from siamface.data.records import (
    GENDER_LABELS,
    GENDERS,
    FaceDataset,
    FaceRecord,
    parse_gender,
)
from siamface.data.splits import exclude_fold_people, person_split
from siamface.errors import DatasetError, UnknownNameError
from siamface.io import find_images

if TYPE_CHECKING:
    from siamface.data.samplers import MPerPersonSampler


def __getattr__(name: str) -> Any:
    if name == "MPerPersonSampler":  # torch: imported on first use
        from siamface.data.samplers import MPerPersonSampler

        return MPerPersonSampler
    raise AttributeError(f"module 'siamface.data' has no attribute {name!r}")


__all__ = [
    "DISTORTION_TAGS",
    "FACECOM_TAGS",
    "GENDERS",
    "GENDER_LABELS",
    "LAYOUTS",
    "PAIR_LABELS",
    "FaceDataset",
    "FaceRecord",
    "IndexPair",
    "LFWPair",
    "ListedPair",
    "MPerPersonSampler",
    "PairList",
    "PairSampler",
    "detect_layout",
    "distortion_tag",
    "evaluation_pairs",
    "exclude_fold_people",
    "facecom_gender_lookup",
    "facecom_person_id",
    "flat_person_id",
    "fold_persons",
    "index_lfw_pairs",
    "lfw_image_path",
    "load_facecom",
    "load_facecom_gender",
    "load_facecom_identities",
    "load_flat_folder",
    "load_lfw",
    "load_manifest",
    "load_person_folders",
    "open_dataset",
    "parse_gender",
    "person_split",
    "read_genders_csv",
    "read_lfw_genders",
    "read_pair_list",
    "read_pairs",
    "read_view1",
    "read_view2",
]

LAYOUTS = ("auto", "facecom", "lfw", "folders", "manifest", "flat")


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Guess the layout of ``path``: a ``.csv`` file is a manifest; a folder with ``Task_B``
    is FACECOM; one with ``images/`` and ``pairs.txt`` is LFW; one with sub-folders is person
    folders; one with only images is flat."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "manifest"
        raise DatasetError(f"{path} is a file but not a .csv manifest")
    if not path.is_dir():
        raise DatasetError(f"dataset path {path} not found")
    names = {p.name.lower(): p for p in path.iterdir()}
    if "task_b" in names or "task_a" in names:
        return "facecom"
    if "images" in names and names["images"].is_dir() and (path / "pairs.txt").is_file():
        return "lfw"
    if any(p.is_dir() and not p.name.startswith(".") for p in names.values()):
        return "folders"
    if find_images(path, recursive=False):
        return "flat"
    raise DatasetError(
        f"cannot tell the layout of {path}: it has no sub-folders and no images; valid layouts: "
        f"{', '.join(LAYOUTS[1:])}"
    )


def open_dataset(
    path: str | os.PathLike[str], layout: str = "auto", *, split: str = "train"
) -> FaceDataset:
    """Load ``path`` with ``layout`` (one of ``LAYOUTS``; ``"auto"`` uses ``detect_layout``).
    ``split`` is used by FACECOM only (Task_B identities with Task_A genders)."""
    if layout not in LAYOUTS:
        raise UnknownNameError("dataset layout", layout, LAYOUTS)
    if layout == "auto":
        layout = detect_layout(path)
    if layout == "facecom":
        return load_facecom(path, split=split)
    if layout == "lfw":
        return load_lfw(path)
    if layout == "folders":
        return load_person_folders(path)
    if layout == "manifest":
        return load_manifest(path)
    return load_flat_folder(path)
