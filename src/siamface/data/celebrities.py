"""Identity data without gender labels: a CelebA identity subset and a set of Asian
celebrity photos.

* CelebA: ``identity_CelebA.txt`` (``<image> <identity>`` per line, an optional header) beside
  an image folder (``Celeb/``, ``img_align_celeba/`` or ``img_celeba/``); the images present
  are loaded, person ``celeba:<identity>``; listed images that are absent are left out (the
  subset holds a few thousand of CelebA's 202,599).
* Asian celebrities: ``<root>/[faces_data/]<nationality>/<name>-<n>.jpg``, person
  ``<nationality>/<name>`` (the file name before ``-<n>``); groups ``ethnicity`` East Asian
  and ``nationality``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from siamface.data.records import FaceDataset, FaceRecord
from siamface.errors import DatasetError
from siamface.io import find_images

__all__ = [
    "ASIAN_NATIONALITIES",
    "CELEBA_IDENTITY_FILE",
    "asian_celebrities_root",
    "load_asian_celebrities",
    "load_celeba_identities",
    "read_celeba_identities",
]

log = logging.getLogger(__name__)
CELEBA_IDENTITY_FILE = "identity_CelebA.txt"
_CELEBA_IMAGE_DIRS = ("Celeb", "img_align_celeba", "img_celeba", "images")
ASIAN_NATIONALITIES = ("chinese", "japanese", "korean")
_NUMBERED = re.compile(r"^(.+?)-(\d+)$")


def read_celeba_identities(path: str | os.PathLike[str]) -> dict[str, str]:
    """Image file name -> identity of a CelebA identity file; a malformed line fails with
    the file and line."""
    path = Path(path)
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if n == 1 and fields[0].lower() in ("image", "image_id", "file"):
                continue  # a header
            if len(fields) != 2 or not fields[1].isdigit():
                raise DatasetError(
                    f"{path}:{n}: expected '<image> <identity number>', got {line.strip()!r}")
            out[fields[0]] = fields[1]
    if not out:
        raise DatasetError(f"{path} lists no images")
    return out


def load_celeba_identities(root: str | os.PathLike[str]) -> FaceDataset:
    """The CelebA images present under ``root`` with their identities."""
    root = Path(root)
    identity_file = root / CELEBA_IDENTITY_FILE
    if not identity_file.is_file():
        raise DatasetError(f"CelebA folder {root} has no {CELEBA_IDENTITY_FILE}")
    folder = next((root / d for d in _CELEBA_IMAGE_DIRS if (root / d).is_dir()), None)
    if folder is None:
        raise DatasetError(f"CelebA folder {root} has no image folder "
                           f"({', '.join(_CELEBA_IMAGE_DIRS)})")
    identities = read_celeba_identities(identity_file)
    records, unlisted = [], []
    for path in find_images(folder, recursive=False):
        person = identities.get(path.name)
        if person is None:
            unlisted.append(path.name)
            continue
        records.append(FaceRecord(path, f"celeba:{person}"))
    if unlisted:
        log.warning("%d image(s) in %s are not in %s and are left out, e.g. %s", len(unlisted),
                    folder, identity_file.name, ", ".join(unlisted[:3]))
    if not records:
        raise DatasetError(f"none of the images in {folder} is listed in {identity_file}")
    return FaceDataset(records, name=f"CelebA identities ({root})")


def asian_celebrities_root(root: Path) -> Path | None:
    """The folder holding the nationality folders (``root`` or ``root/faces_data``)."""
    for base in (root / "faces_data", root):
        if base.is_dir() and any((base / n).is_dir() for n in ASIAN_NATIONALITIES):
            return base
    return None


def load_asian_celebrities(root: str | os.PathLike[str]) -> FaceDataset:
    """The Asian celebrity photos, one person per nationality and name."""
    root = Path(root)
    base = asian_celebrities_root(root)
    if base is None:
        raise DatasetError(f"{root} has no {'/'.join(ASIAN_NATIONALITIES)} folders "
                           "(nor faces_data/ holding them)")
    records = []
    for nationality in ASIAN_NATIONALITIES:
        folder = base / nationality
        if not folder.is_dir():
            continue
        for path in find_images(folder, recursive=False):
            match = _NUMBERED.match(path.stem)
            name = match.group(1) if match else path.stem
            records.append(FaceRecord(path, f"{nationality}/{name}", None, None,
                                      {"ethnicity": "East Asian", "nationality": nationality}))
    if not records:
        raise DatasetError(f"{base} has nationality folders but no images in them")
    return FaceDataset(records, name=f"Asian celebrities ({root})")
