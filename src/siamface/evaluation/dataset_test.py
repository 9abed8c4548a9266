"""The reference system's dataset test as one call: a folder or a zip of images whose person
id is the file name up to the first ``_`` or ``-``, N generated pairs, visual samples and the
dashboard. What the web app's dataset tab and ``siamface evaluate --layout flat`` run."""

from __future__ import annotations

import os
from pathlib import Path

from siamface.evaluation.data import open_evaluation_data
from siamface.evaluation.result import Evaluation
from siamface.evaluation.run import EvaluationOptions, evaluate

__all__ = ["dataset_test"]


def dataset_test(service, source: str | os.PathLike, *, n_pairs: int = 200, samples: int = 8,
                 seed: int = 0, errors_first: bool = False, threshold: float | None = None,
                 out_dir: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                 progress: bool = False) -> tuple[Evaluation, dict[str, Path]]:
    """Evaluate ``service`` on ``n_pairs`` pairs generated from the images of ``source`` (a
    flat folder or a zip, which is checked before anything is extracted and read from a
    private temporary folder). Writes the report files into ``out_dir`` when given and
    returns the evaluation and the written paths."""
    options = EvaluationOptions(
        n_pairs=n_pairs, seed=seed, threshold=threshold, samples=samples,
        errors_first=errors_first, cache_dir=None if cache_dir is None else Path(cache_dir),
        use_cache=use_cache, progress=progress)
    written: dict[str, Path] = {}
    with open_evaluation_data(source, layout="flat") as data:
        evaluation = evaluate(service, data.dataset, data_root=data.root, options=options,
                              data_description=data.description)
    if out_dir is not None:
        from siamface.report import write_report

        written = write_report(evaluation, Path(out_dir), samples=samples > 0)
    return evaluation, written
