"""Training data: records from a dataset layout, a person-wise validation split, checks that
fail before training, and face chips (through the crop cache when one is configured).
Unreadable images are skipped and listed, never fatal."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from siamface.data import FaceDataset, open_dataset, person_split
from siamface.errors import DatasetError
from siamface.train.config import DataConfig

__all__ = ["TrainData", "check_trainable", "load_chips", "load_datasets", "prepare_data"]

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Training and validation records with their chips (uint8 (N, S, S, 3), record order);
    ``skipped`` lists ``(path, reason)`` of the images that could not be used."""

    train: FaceDataset
    val: FaceDataset
    train_chips: np.ndarray
    val_chips: np.ndarray
    skipped: list[tuple[str, str]] = field(default_factory=list)


def check_trainable(dataset: FaceDataset | None, what: str) -> None:
    """Refuse, before any training, a set without impostor and genuine pairs."""
    if dataset is None or len(dataset) == 0:
        raise DatasetError(f"{what} has no usable images; nothing to train on")
    persons = dataset.person_indices()
    if len(persons) < 2:
        only = next(iter(persons))
        raise DatasetError(
            f"{what} ({dataset.name}) has a single person ({only!r}, {len(dataset)} images); "
            "verification training needs at least 2 persons (impostor pairs) and one of them "
            "with 2+ images (genuine pairs)"
        )
    if not any(len(idx) >= 2 for idx in persons.values()):
        raise DatasetError(
            f"{what} ({dataset.name}) has {len(persons)} persons but none with 2 or more "
            "images, so there are no genuine pairs to train verification on"
        )


def _exclusions(config: DataConfig) -> set[str]:
    if not config.exclude_persons_file:
        return set()
    path = Path(config.exclude_persons_file)
    if not path.is_file():
        raise DatasetError(f"data.exclude_persons_file {path} not found")
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()}


def load_datasets(config: DataConfig, seed: int = 0) -> tuple[FaceDataset, FaceDataset]:
    """(train, validation) records for ``config``; validation persons never train."""
    if not config.root:
        raise DatasetError("data.root is not set; pass --data PATH or data.root=PATH")
    root = Path(config.root)
    if not root.exists():
        raise DatasetError(f"dataset {root} does not exist")
    train = open_dataset(root, config.layout, split="train")
    val: FaceDataset | None = None
    layout = config.layout
    if config.val_root:
        val = open_dataset(config.val_root, config.layout, split="val")
    elif layout == "facecom" or (layout == "auto" and (root / "Task_B").is_dir()):
        try:
            val = open_dataset(root, "facecom", split="val")
        except DatasetError as exc:
            log.warning("no FACECOM val split (%s); splitting train by person", exc)
    banned = _exclusions(config)
    if banned:
        train = train.filter(lambda r: r.person_id not in banned)
        if val is not None:
            val = val.filter(lambda r: r.person_id not in banned)
    if not config.include_distorted:
        train = train.originals()
        if val is not None:
            val = val.originals()
    if config.max_images is not None and len(train) > config.max_images:
        order = np.random.default_rng(seed).permutation(len(train))[:config.max_images]
        train = FaceDataset([train[int(i)] for i in sorted(order)], name=train.name)
    if val is None:
        check_trainable(train, "the training data")
        train, val = person_split(train, config.val_fraction, seed=seed)
    else:
        overlap = set(train.persons()) & set(val.persons())
        if overlap:
            train = train.filter(lambda r: r.person_id not in overlap)
    return train, val


def load_chips(dataset: FaceDataset, pipeline, *, cache_dir: str | None = None,
               progress: Callable[[int], None] | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Chips of ``dataset``'s images: (chips (K, S, S, 3) uint8, kept indices (K,),
    skipped [(path, reason)]). The chips go through :func:`siamface.cache.fill_cache`, the
    routine ``siamface prepare`` uses, into the crop cache under ``cache_dir`` (a temporary
    one when it is None), so a prepared cache is found and extended."""
    from siamface.cache import CropCache, fill_cache

    paths = [str(record.path) for record in dataset]
    chips: list[np.ndarray] = []
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    with contextlib.ExitStack() as stack:
        directory = cache_dir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="siamface-chips-"))
        cache = stack.enter_context(CropCache(directory, pipeline.params()))
        filled = fill_cache(cache, paths, pipeline,
                            on_result=(lambda _entry: progress(1)) if progress else None)
        if progress:
            progress(len(paths) - filled.processed)
        for i, path in enumerate(paths):
            entry = cache.lookup(filled.keys[path]) if path in filled.keys else None
            if entry is None:
                skipped.append((path, filled.unreadable.get(path, "unknown error")))
            elif entry.chip is None:
                skipped.append((path, entry.error or "unreadable"))
            elif entry.no_face is not None:
                skipped.append((path, entry.no_face))
            else:
                chips.append(cache.load_chip(entry))
                kept.append(i)
    size = int(getattr(pipeline, "chip_size", 150))
    stacked = np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8)
    skipped.sort()
    return stacked, np.array(kept, dtype=np.int64), skipped


def prepare_data(config: DataConfig, pipeline, *, seed: int = 0,
                 progress: Callable[[int], None] | None = None) -> TrainData:
    """Records, split and chips; fails with ``DatasetError`` before training when the usable
    training or validation data cannot make pairs."""
    train, val = load_datasets(config, seed)
    check_trainable(train, "the training split")
    check_trainable(val, "the validation split")
    parts = []
    skipped: list[tuple[str, str]] = []
    for dataset in (train, val):
        chips, kept, bad = load_chips(dataset, pipeline, cache_dir=config.cache_dir,
                                      progress=progress)
        skipped += bad
        if len(kept) == 0:
            raise DatasetError(
                f"none of the {len(dataset)} images of {dataset.name} could be read; first "
                f"error: {bad[0][0]}: {bad[0][1]}" if bad else f"{dataset.name} is empty"
            )
        kept_set = {int(i) for i in kept}
        subset = FaceDataset([r for i, r in enumerate(dataset) if i in kept_set],
                             name=dataset.name)
        parts.append((subset, chips))
    (train, train_chips), (val, val_chips) = parts
    check_trainable(train, "the readable training images")
    check_trainable(val, "the readable validation images")
    if skipped:
        log.warning("skipped %d unreadable image(s): %s", len(skipped),
                    ", ".join(p for p, _ in skipped[:5]))
    return TrainData(train, val, train_chips, val_chips, skipped)
