"""The public face sets the fairness benchmarks and the training script read: where they are
(flags, else ``$SIAMFACE_DATA/<name>``), loaded as datasets, and embedded once through the
evaluation's crop and embedding caches.

    $SIAMFACE_DATA/fairface/   fairface_label_{train,val}.csv + fair_face/{train,val}/
    $SIAMFACE_DATA/utkface/    UTKFace images (any depth)
    $SIAMFACE_DATA/asian/      faces_data/{chinese,japanese,korean}/
    $SIAMFACE_DATA/celeba/     identity_CelebA.txt + Celeb/

Extract them from their repositories (README, "Fairness across populations"); nothing here
downloads.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = REPO / ".cache" / "faces"
SETS = ("fairface", "utkface", "asian", "celeba")


def data_root() -> Path | None:
    value = os.environ.get("SIAMFACE_DATA")
    return Path(value).expanduser() if value else None


def resolve(name: str, given: Path | None) -> Path | None:
    """The folder of set ``name``: ``given``, else ``$SIAMFACE_DATA/<name>`` if it exists."""
    if given is not None:
        return given
    root = data_root()
    if root is not None and (root / name).exists():
        return root / name
    return None


LAYOUTS = {"fairface": "fairface", "utkface": "utkface", "asian": "asian-celebrities",
           "celeba": "celeba"}


def load(name: str, path: Path, split: str = "val"):
    """Set ``name`` (one of :data:`SETS`) from ``path`` (FairFace: ``split``'s CSV)."""
    from siamface.data import open_dataset

    if name not in LAYOUTS:
        raise ValueError(f"unknown set {name!r}; known: {', '.join(SETS)}")
    return open_dataset(path, LAYOUTS[name], split=split)


def embed(service, dataset, *, cache: Path = DEFAULT_CACHE, workers: int = 2, desc: str = ""):
    """Embeddings of every record of ``dataset`` (rows without a face are NaN)."""
    from siamface.evaluation.embeddings import embed_paths

    return embed_paths(service, [r.path for r in dataset], cache_dir=cache, workers=workers,
                       progress=sys.stderr.isatty(), desc=desc or dataset.name)


def stable_fraction(key: str) -> float:
    """A stable number in [0, 1) for ``key`` (the same on every machine and run)."""
    import hashlib

    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def held_out(dataset, fraction: float, *, by: str):
    """(training part, held-out part) of ``dataset``: a record is held out when the hash of
    its person id (``by="person"``) or file name (``by="file"``) falls below ``fraction``.
    The benchmarks evaluate on the held-out part; the training script never reads it."""
    if by not in ("person", "file"):
        raise ValueError(f"by must be 'person' or 'file', got {by!r}")

    def out(record) -> bool:
        return stable_fraction(record.person_id if by == "person" else Path(record.path).name) < fraction

    return (dataset.filter(lambda r: not out(r), name=f"{dataset.name} (training part)"),
            dataset.filter(out, name=f"{dataset.name} (held out)"))


# What the fairness benchmark evaluates on and the training script keeps out of training and
# calibration: half of the Asian celebrities' people, a fifth of UTKFace's files (FairFace val
# is kept out whole).
ASIAN_HELD_OUT = 0.5
UTKFACE_HELD_OUT = 0.2
