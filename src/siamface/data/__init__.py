"""Dataset layouts (FACECOM, LFW, person folders, CSV manifest, flat folder, and the public
group-labelled and identity sets UTKFace, FairFace, CelebA identities, Asian celebrities)
loaded into one ``FaceDataset`` of ``FaceRecord``; person-wise splits; pairs; identity-balanced samplers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from siamface.data.celebrities import (
    CELEBA_IDENTITY_FILE,
    asian_celebrities_root,
    load_asian_celebrities,
    load_celeba_identities,
    read_celeba_identities,
)
from siamface.data.demographics import (
    AGE_BANDS,
    CHILD_BANDS,
    age_band,
    load_fairface,
    load_utkface,
    looks_like_utkface,
)
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
    "AGE_BANDS",
    "CHILD_BANDS",
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
    "age_band",
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
    "load_asian_celebrities",
    "load_celeba_identities",
    "load_facecom",
    "load_facecom_gender",
    "load_facecom_identities",
    "load_fairface",
    "load_flat_folder",
    "load_lfw",
    "load_manifest",
    "load_person_folders",
    "load_utkface",
    "open_dataset",
    "parse_gender",
    "person_split",
    "read_celeba_identities",
    "read_genders_csv",
    "read_lfw_genders",
    "read_pair_list",
    "read_pairs",
    "read_view1",
    "read_view2",
]

LAYOUTS = ("auto", "facecom", "lfw", "fairface", "utkface", "celeba", "asian-celebrities",
           "folders", "manifest", "flat")


def detect_layout(path: str | os.PathLike[str]) -> str:
    """Guess the layout of ``path``: a ``fairface_label_*.csv`` is FairFace, another ``.csv``
    file a manifest; a folder with ``Task_B`` is FACECOM; one with ``images/`` and
    ``pairs.txt`` is LFW; one with FairFace's label CSVs, CelebA's identity file or the Asian
    set's nationality folders is that set; one whose images carry UTKFace names is UTKFace;
    one with sub-folders is person folders; one with only images is flat."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return "fairface" if path.name.lower().startswith("fairface_label_") else "manifest"
        raise DatasetError(f"{path} is a file but not a .csv manifest")
    if not path.is_dir():
        raise DatasetError(f"dataset path {path} not found")
    names = {p.name.lower(): p for p in path.iterdir()}
    if "task_b" in names or "task_a" in names:
        return "facecom"
    if "images" in names and names["images"].is_dir() and (path / "pairs.txt").is_file():
        return "lfw"
    if any(n.startswith("fairface_label_") and n.endswith(".csv") for n in names):
        return "fairface"
    if CELEBA_IDENTITY_FILE.lower() in names:
        return "celeba"
    if asian_celebrities_root(path) is not None:
        return "asian-celebrities"
    if looks_like_utkface(path):
        return "utkface"
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
    ``split`` is used by FACECOM (Task_B identities with Task_A genders) and by a FairFace
    folder (``fairface_label_<split>.csv``; FACECOM's default "train" is FairFace's too)."""
    if layout not in LAYOUTS:
        raise UnknownNameError("dataset layout", layout, LAYOUTS)
    if layout == "auto":
        layout = detect_layout(path)
    if layout == "facecom":
        return load_facecom(path, split=split)
    if layout == "lfw":
        return load_lfw(path)
    if layout == "fairface":
        return load_fairface(path, split=split)
    if layout == "utkface":
        return load_utkface(path)
    if layout == "celeba":
        return load_celeba_identities(path)
    if layout == "asian-celebrities":
        return load_asian_celebrities(path)
    if layout == "folders":
        return load_person_folders(path)
    if layout == "manifest":
        return load_manifest(path)
    return load_flat_folder(path)
