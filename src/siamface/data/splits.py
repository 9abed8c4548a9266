"""Person-wise splits: no person is ever on both sides."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from siamface.data.lfw import LFWPair, fold_persons
from siamface.data.records import FaceDataset
from siamface.errors import DatasetError

__all__ = ["exclude_fold_people", "person_split"]


def person_split(
    dataset: FaceDataset,
    val_fraction: float = 0.2,
    *,
    seed: int = 0,
    stratify: bool = True,
) -> tuple[FaceDataset, FaceDataset]:
    """Split ``dataset`` by person into (train, validation).

    With ``stratify`` the persons of each gender group (male, female, unknown, by
    ``FaceDataset.person_gender``) are split separately, so both sides keep the gender mix.
    Each non-empty group with at least two persons gives at least one to each side. The same
    ``seed`` gives the same split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be in (0, 1), got {val_fraction}")
    persons = dataset.persons()
    if len(persons) < 2:
        raise DatasetError(
            f"{dataset.name} has {len(persons)} person(s); a person-wise split needs 2 or more"
        )
    rng = np.random.default_rng(seed)
    if stratify:
        person_gender = dataset.person_gender()
        groups: dict[str, list[str]] = {}
        for person in persons:
            groups.setdefault(person_gender[person] or "unknown", []).append(person)
        group_list = [groups[k] for k in sorted(groups)]
    else:
        group_list = [persons]
    val: set[str] = set()
    for group in group_list:
        order = [group[i] for i in rng.permutation(len(group))]
        n_val = round(val_fraction * len(order))
        if len(order) >= 2:
            n_val = min(max(n_val, 1), len(order) - 1)
        val.update(order[:n_val])
    if not val:  # only possible with a single tiny group: force one person over
        val.add(persons[int(rng.integers(len(persons)))])
    if len(val) == len(persons):
        val.discard(min(val))
    train_persons = [p for p in persons if p not in val]
    return (
        dataset.subset_persons(train_persons, name=f"{dataset.name} [train]"),
        dataset.subset_persons(val, name=f"{dataset.name} [val]"),
    )


def exclude_fold_people(
    dataset: FaceDataset, pairs: Sequence[LFWPair], fold: int
) -> FaceDataset:
    """``dataset`` without anyone named in the pairs of View 2 ``fold``: the training set
    allowed when reporting that fold."""
    banned = fold_persons(list(pairs), fold)
    kept = dataset.filter(
        lambda r: r.person_id not in banned, name=f"{dataset.name} [without fold {fold}]"
    )
    return kept
