"""The one dataset interface every layout loads into: frozen ``FaceRecord`` rows in a
``FaceDataset`` with person and gender helpers.

Gender convention, used by every loader and by the gender loss: ``"male"`` is label 0,
``"female"`` is label 1, unknown is ``None`` (label -1, masked out of the loss).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamface.errors import DatasetError
from siamface.io import IMAGE_EXTENSIONS, find_images

__all__ = [
    "GENDERS",
    "GENDER_ALIASES",
    "GENDER_LABELS",
    "UNKNOWN_LABEL",
    "FaceDataset",
    "FaceRecord",
    "parse_gender",
    "person_folder_images",
]

GENDERS: tuple[str, str] = ("male", "female")
GENDER_LABELS: dict[str, int] = {"male": 0, "female": 1}
UNKNOWN_LABEL = -1
# Accepted spellings (case-insensitive, surrounding spaces ignored). Numbers follow the label
# convention above: 0 = male, 1 = female. An empty value means "unknown".
GENDER_ALIASES: dict[str, str] = {
    "male": "male", "m": "male", "man": "male", "0": "male",
    "female": "female", "f": "female", "woman": "female", "1": "female",
}


def person_folder_images(person_dir: Path) -> tuple[list[Path], list[Path]]:
    """A person folder's images and those of its ``distortion/`` subfolder (FACECOM shape);
    :class:`DatasetError` when both are empty."""
    originals = find_images(person_dir, recursive=False)
    distorted_dir = person_dir / "distortion"
    distorted = find_images(distorted_dir, recursive=False) if distorted_dir.is_dir() else []
    if not originals and not distorted:
        raise DatasetError(
            f"person folder {person_dir} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))} "
            "directly inside or in distortion/); add images or remove the folder"
        )
    return originals, distorted


def parse_gender(value: object, *, source: str = "") -> str | None:
    """Normalise a gender value to ``"male"``, ``"female"`` or ``None`` (empty / None).

    Accepts male/female/m/f/man/woman/0/1 in any case; anything else raises
    ``DatasetError`` listing the valid spellings. ``source`` (a file and line) goes in the
    message.
    """
    if value is None:
        return None
    text = str(value).strip().lower()
    if text == "":
        return None
    if text in GENDER_ALIASES:
        return GENDER_ALIASES[text]
    where = f" in {source}" if source else ""
    raise DatasetError(
        f"unknown gender {value!r}{where}; valid (case-insensitive): "
        f"{', '.join(GENDER_ALIASES)}, or empty for unknown"
    )


@dataclass(frozen=True)
class FaceRecord:
    """One image: where it is, whose face it is, the gender if known, the distortion tag
    (``None`` for an original image) and group labels for evaluation and balanced sampling
    (``{"ethnicity": "Black", "age_band": "20-29"}``; stored as sorted pairs so records stay
    hashable). siamface never predicts a group label other than gender."""

    path: Path
    person_id: str
    gender: str | None = None
    distortion: str | None = None
    groups: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.path, Path):
            object.__setattr__(self, "path", Path(self.path))
        if isinstance(self.groups, Mapping):
            object.__setattr__(self, "groups", tuple(sorted(
                (str(k), str(v)) for k, v in self.groups.items() if v is not None)))
        if self.gender not in (None, *GENDERS):
            raise DatasetError(
                f"FaceRecord gender must be one of {GENDERS} or None, got {self.gender!r} "
                f"(use parse_gender to normalise other spellings)"
            )
        if not self.person_id:
            raise DatasetError(f"FaceRecord for {self.path} has an empty person_id")

    def group(self, column: str) -> str | None:
        """This record's value of group ``column`` (None when it has none)."""
        return dict(self.groups).get(column)

    @property
    def gender_label(self) -> int:
        """0 for male, 1 for female, -1 when unknown."""
        return GENDER_LABELS[self.gender] if self.gender else UNKNOWN_LABEL


class FaceDataset(Sequence[FaceRecord]):
    """An immutable list of ``FaceRecord`` with person and gender helpers.

    ``name`` says where the records came from (used in error messages). An empty dataset is
    refused with ``DatasetError``.
    """

    def __init__(self, records: Iterable[FaceRecord], name: str = "dataset"):
        self.records: tuple[FaceRecord, ...] = tuple(records)
        self.name = name
        if not self.records:
            raise DatasetError(f"{name} has no images; check the path and the layout")
        self._by_person: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return FaceDataset(self.records[index], name=self.name)
        return self.records[index]

    def __iter__(self) -> Iterator[FaceRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        counts = self.gender_counts()
        return (
            f"FaceDataset({self.name!r}, images={len(self)}, persons={len(self.person_indices())},"
            f" male={counts['male']}, female={counts['female']}, unknown={counts['unknown']})"
        )

    # --- persons -------------------------------------------------------------------------
    def person_indices(self) -> dict[str, list[int]]:
        """Person id -> indices of that person's records, in record order."""
        if self._by_person is None:
            groups: dict[str, list[int]] = {}
            for i, record in enumerate(self.records):
                groups.setdefault(record.person_id, []).append(i)
            self._by_person = groups
        return self._by_person

    def persons(self) -> list[str]:
        """Sorted person ids."""
        return sorted(self.person_indices())

    def by_person(self) -> dict[str, list[FaceRecord]]:
        """Person id -> that person's records (sorted by person id)."""
        groups = self.person_indices()
        return {p: [self.records[i] for i in groups[p]] for p in sorted(groups)}

    def person_labels(self) -> np.ndarray:
        """Integer person label per record (index into ``persons()``), shape (N,)."""
        lookup = {p: i for i, p in enumerate(self.persons())}
        return np.array([lookup[r.person_id] for r in self.records], dtype=np.int64)

    def person_gender(self) -> dict[str, str | None]:
        """Person id -> the person's gender: the majority of their labelled images, female on
        a tie (female labels are the rarer, curated ones), None when none is labelled."""
        result: dict[str, str | None] = {}
        for person, indices in self.person_indices().items():
            votes = Counter(self.records[i].gender for i in indices if self.records[i].gender)
            if not votes:
                result[person] = None
            else:
                result[person] = "female" if votes["female"] >= votes["male"] else "male"
        return result

    def group_columns(self) -> list[str]:
        """Group columns that at least one record carries, sorted."""
        return sorted({k for r in self.records for k, _ in r.groups})

    def group_labels(self, column: str) -> list[str | None]:
        """Per-record values of group ``column`` (None where a record has none)."""
        return [r.group(column) for r in self.records]

    # --- gender --------------------------------------------------------------------------
    def gender_labels(self) -> np.ndarray:
        """Gender label per record: 0 male, 1 female, -1 unknown; shape (N,), int64."""
        return np.array([r.gender_label for r in self.records], dtype=np.int64)

    def gender_counts(self, by: str = "image") -> dict[str, int]:
        """Counts of ``male``, ``female`` and ``unknown`` by ``"image"`` or by ``"person"``."""
        if by == "image":
            values: Iterable[str | None] = (r.gender for r in self.records)
        elif by == "person":
            values = self.person_gender().values()
        else:
            raise DatasetError(f"gender_counts(by={by!r}): valid values are 'image', 'person'")
        counts = Counter(v or "unknown" for v in values)
        return {"male": counts["male"], "female": counts["female"], "unknown": counts["unknown"]}

    # --- subsets -------------------------------------------------------------------------
    def filter(self, keep: Callable[[FaceRecord], bool], name: str | None = None) -> FaceDataset:
        """A new dataset of the records for which ``keep(record)`` is true."""
        return FaceDataset((r for r in self.records if keep(r)), name=name or self.name)

    def subset_persons(self, persons: Iterable[str], name: str | None = None) -> FaceDataset:
        """A new dataset of the given persons' records (record order kept)."""
        wanted = set(persons)
        return self.filter(lambda r: r.person_id in wanted, name=name)

    def originals(self) -> FaceDataset:
        """Only the undistorted records."""
        return self.filter(lambda r: r.distortion is None, name=f"{self.name} (originals)")

    def with_min_images(self, n: int) -> FaceDataset:
        """Only persons with at least ``n`` images."""
        groups = self.person_indices()
        return self.subset_persons((p for p, idx in groups.items() if len(idx) >= n))

    @staticmethod
    def concat(datasets: Sequence[FaceDataset], name: str = "dataset") -> FaceDataset:
        """All records of ``datasets`` in order (person ids are not renamed)."""
        return FaceDataset((r for d in datasets for r in d.records), name=name)
