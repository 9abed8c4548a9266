"""What an evaluation reads: a dataset in any layout (or a zip of images), its protocol pairs
with line numbers, and per-image group labels from a manifest's columns."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from siamface.data import FaceDataset, IndexPair, open_dataset, read_pairs
from siamface.errors import DatasetError

__all__ = ["EvaluationData", "open_evaluation_data", "protocol_pairs", "read_group_columns"]


@dataclass
class EvaluationData:
    """A loaded dataset, its root folder, optional protocol pairs and folds, group labels
    (column -> one value per record) and the protocol lines skipped (``--skip-missing``)."""

    dataset: FaceDataset
    root: Path
    layout: str
    pairs: list[IndexPair] | None = None
    folds: np.ndarray | None = None
    groups: dict[str, list[str | None]] = field(default_factory=dict)
    skipped_lines: list[tuple[str, str]] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)


def _line_numbers(path: Path) -> list[int]:
    """1-based numbers of the non-blank lines of a file (``read_pairs`` skips blank ones)."""
    with open(path, encoding="utf-8") as fh:
        return [n for n, line in enumerate(fh, 1) if line.strip()]


def protocol_pairs(dataset: FaceDataset, pairs_file: str | Path, *, skip_missing: bool = False
                   ) -> tuple[list[IndexPair], np.ndarray, list[tuple[str, str]]]:
    """LFW-style pairs of ``pairs_file`` as indices into ``dataset`` with their folds. A pair
    whose image is not in the dataset fails with the file, line and reason, or with
    ``skip_missing`` is left out and returned as (``file:line``, reason)."""
    pairs_file = Path(pairs_file)
    protocol = read_pairs(pairs_file)
    lines = _line_numbers(pairs_file)[1:]  # the first non-blank line is the header
    lookup = {(r.person_id, r.path.stem): i for i, r in enumerate(dataset)}
    out, folds, skipped = [], [], []
    for n, pair in enumerate(protocol):
        keys = ((pair.name1, f"{pair.name1}_{pair.index1:04d}"),
                (pair.name2, f"{pair.name2}_{pair.index2:04d}"))
        absent = [stem for person, stem in keys if (person, stem) not in lookup]
        if absent:
            where = f"{pairs_file}:{lines[n]}"
            reason = f"image {absent[0]} is not in {dataset.name}"
            if not skip_missing:
                raise DatasetError(f"{where}: {reason} (--skip-missing leaves such pairs out)")
            skipped.append((where, reason))
            continue
        out.append(IndexPair(lookup[keys[0]], lookup[keys[1]], pair.same))
        folds.append(pair.fold)
    if not out:
        raise DatasetError(f"{pairs_file}: none of its pairs has both images in {dataset.name}")
    return out, np.array(folds, np.int64), skipped


def read_group_columns(manifest: Path, dataset: FaceDataset, columns: list[str]
                       ) -> dict[str, list[str | None]]:
    """Per-record values of ``columns`` of a CSV manifest (matched by resolved path); an
    empty cell is unknown."""
    with open(manifest, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = {name.strip().lower(): name for name in (reader.fieldnames or [])}
        missing = [c for c in columns if c.lower() not in header]
        if missing:
            raise DatasetError(
                f"manifest {manifest} has no column {missing[0]!r}; its columns: "
                f"{', '.join(header.values())}")
        by_path: dict[Path, dict[str, str]] = {}
        for row in reader:
            image = Path(row[header["path"]])
            image = image if image.is_absolute() else manifest.parent / image
            by_path[image.resolve()] = row
    out: dict[str, list[str | None]] = {}
    for column in columns:
        name = header[column.lower()]
        out[column] = [((by_path.get(r.path.resolve()) or {}).get(name) or "").strip() or None
                       for r in dataset]
    return out


def _groups(data: EvaluationData, source: Path, columns: list[str]) -> None:
    """Gender always (where known); ``distortion`` and the groups the records carry (FairFace,
    UTKFace, ...) from the records; other columns from the manifest."""
    genders = [r.gender for r in data.dataset]
    if any(g is not None for g in genders):
        data.groups["gender"] = genders
    manifest_columns = []
    for column in columns:
        if column.lower() == "gender":
            if "gender" not in data.groups:
                raise DatasetError(f"{source} has no gender labels to group by")
        elif column.lower() == "distortion":
            data.groups["distortion"] = [r.distortion or "none" for r in data.dataset]
        elif column in data.dataset.group_columns():
            data.groups[column] = data.dataset.group_labels(column)
        else:
            manifest_columns.append(column)
    if manifest_columns:
        if data.layout != "manifest":
            raise DatasetError(
                f"--groups {' '.join(manifest_columns)}: this {data.layout} dataset has no such "
                "group; its groups: "
                f"{', '.join(['gender', 'distortion', *data.dataset.group_columns()])} (other "
                "columns come from a CSV manifest, --data FILE.csv)")
        data.groups.update(read_group_columns(source, data.dataset, manifest_columns))


@contextlib.contextmanager
def open_evaluation_data(data: str | Path, *, layout: str = "auto",
                         pairs_file: str | Path | None = None, skip_missing: bool = False,
                         groups: list[str] | None = None) -> Iterator[EvaluationData]:
    """Load ``data`` (a folder, a CSV manifest, or a ``.zip`` of images, extracted safely
    into a private temporary folder for the duration of the ``with`` block)."""
    source = Path(data)
    with contextlib.ExitStack() as stack:
        root = source
        if source.is_file() and source.suffix.lower() == ".zip":
            from siamface.archive import extract_images_zip

            root = _single_top_folder(stack.enter_context(extract_images_zip(source)))
        dataset = open_dataset(root, layout)
        resolved = layout if layout != "auto" else _detected(root)
        out = EvaluationData(dataset, root if root.is_dir() else root.parent, resolved)
        if pairs_file is not None:
            out.pairs, out.folds, out.skipped_lines = protocol_pairs(
                dataset, pairs_file, skip_missing=skip_missing)
        _groups(out, root, list(groups or []))
        out.description = {
            "description": dataset.name if source == root else f"zip {source.name}",
            "path": str(source),
            "layout": resolved,
            "pairs_file": None if pairs_file is None else str(pairs_file),
            "pairs_skipped": len(out.skipped_lines),
            "genders_known": int(sum(r.gender is not None for r in dataset)),
        }
        yield out


def _detected(root: Path) -> str:
    from siamface.data import detect_layout

    return detect_layout(root)


def _single_top_folder(root: Path) -> Path:
    """A zip that holds one top folder (``faces/...``) is read from inside that folder."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return root
