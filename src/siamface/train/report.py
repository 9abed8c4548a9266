"""Run-folder writers: per-epoch metrics as CSV and JSON, training curves as PNG, the
resolved config as YAML. Small functions chosen by format; all writes are atomic."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from siamface._atomic import atomic_path, atomic_write_text

__all__ = ["write_config", "write_curves", "write_history_csv", "write_json"]


def write_config(path: str | os.PathLike, config: dict[str, Any]) -> None:
    """The resolved configuration as YAML."""
    import yaml

    atomic_write_text(path, yaml.safe_dump(config, sort_keys=False))


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=float) + "\n")


def write_history_csv(path: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """One row per epoch; columns are the union of the rows' keys in first-seen order."""
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow(row)
    atomic_write_text(path, buffer.getvalue())


def write_curves(path: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """Loss, verification accuracy and gender accuracy per epoch, stages marked."""
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(history) + 1))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    panels = [
        ("loss", [("train_total", "train"), ("val_total", "validation")]),
        ("verification accuracy", [("val_accuracy", "validation")]),
        ("gender", [("val_gender_accuracy", "accuracy"),
                    ("val_gender_balanced_accuracy", "balanced accuracy")]),
    ]
    for ax, (title, series) in zip(axes, panels):
        for key, label in series:
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax.plot(x, [float("nan") if v is None else v for v in values], marker=".",
                        label=label)
        previous = None
        for i, row in enumerate(history):
            if row.get("stage") != previous and i > 0:
                ax.axvline(i + 0.5, color="grey", linestyle=":", linewidth=1)
            previous = row.get("stage")
        ax.set_title(title)
        ax.set_xlabel("epoch (all stages)")
        if ax.get_legend_handles_labels()[1]:  # e.g. no gender curves without gender labels
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
