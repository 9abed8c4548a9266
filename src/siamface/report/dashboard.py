"""The dashboard: one PNG with every plot of an evaluation.

Panels: distance histograms (genuine / impostor, threshold line), ROC, DET, verification
confusion matrix, gender confusion matrix, gender precision / recall / F1, a summary of
accuracy and macro F1, and, when the metrics hold them, accuracy per distortion kind and
FMR / FNMR per group (one panel per group column). A part that is missing (no gender head,
a single class, no finite distance) gives a "not available" panel, never an error.

Drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas: no pyplot, no global
backend switch, safe to call from any thread of a server.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from siamface.report._common import get, num

__all__ = ["dashboard_png"]

_GENUINE = "#1b7f3b"
_IMPOSTOR = "#c0392b"
_BLUE = "#2c6fbb"
_ORANGE = "#e08a1e"
_COLUMNS = 3
_PANEL_SIZE = (5.4, 4.2)  # inches per panel
_MARGINS = (1.35, 0.25, 0.4, 0.65)  # inches around each panel's axes: left, right, top, bottom
_HEADLINE = 0.5  # inches above the panels for the figure's title

Panel = Callable[[Any], None]  # draws on one Axes


def dashboard_png(evaluation, *, dpi: int = 100) -> bytes:
    """The dashboard of ``evaluation`` (a :class:`siamface.evaluation.result.Evaluation`)
    as PNG bytes. The grid has up to three panels a row and as many rows as needed."""
    return _render(evaluation, dpi=dpi, strict=False)


def _render(evaluation, *, dpi: int, strict: bool) -> bytes:
    """``strict``: let an exception in a panel propagate (tests) instead of drawing that
    panel as "not available"."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(evaluation)
    cols = min(_COLUMNS, len(panels))
    rows = math.ceil(len(panels) / cols)
    width, height = _PANEL_SIZE[0] * cols, _PANEL_SIZE[1] * rows + _HEADLINE
    fig = Figure(figsize=(width, height), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    # fixed margins in inches (room for 20-character tick labels): matplotlib's constrained
    # layout measures every tick label and costs seconds
    left, right, top, bottom = _MARGINS
    axes_w, axes_h = _PANEL_SIZE[0] - left - right, _PANEL_SIZE[1] - top - bottom
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw={
        "left": left / width, "right": 1 - right / width,
        "top": 1 - (_HEADLINE + top) / height, "bottom": bottom / height,
        "wspace": (left + right) / axes_w, "hspace": (top + bottom) / axes_h})
    for ax, (title, draw) in zip(axes.flat, panels):
        try:
            draw(ax)
        except Exception as exc:  # one broken panel must not lose the whole dashboard
            if strict:
                raise
            ax.clear()
            _not_available(ax, title, f"could not be drawn: {type(exc).__name__}")
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(_headline(evaluation.metrics), fontsize=13, parse_math=False)
    canvas.draw()  # one draw (savefig would lay out and draw twice); PIL encodes the PNG
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(),
                             "raw", "RGBA", 0, 1).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _headline(metrics: dict[str, Any]) -> str:
    model = get(metrics, "model", "description") or get(metrics, "model", "backbone") or "model"
    data = get(metrics, "data", "description") or get(metrics, "data", "path") or "data"
    return _clip(f"{model}  on  {data}", 160)


def _clip(text: str, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


# the list of panels ---------------------------------------------------------------------

def _panels(evaluation) -> list[tuple[str, Panel]]:
    m = evaluation.metrics
    d = np.asarray(evaluation.distances, dtype=np.float64).ravel()
    s = np.asarray(evaluation.same, dtype=bool).ravel()
    if d.shape != s.shape:  # inconsistent arrays: plot nothing from them
        d, s = np.zeros(0), np.zeros(0, dtype=bool)
    t = num(get(m, "threshold", "value"))
    panels: list[tuple[str, Panel]] = [
        ("Distances", lambda ax: _histogram(ax, d, s, t)),
        ("ROC", lambda ax: _roc(ax, d, s, t, m)),
        ("DET", lambda ax: _det(ax, d, s, t, m)),
        ("Verification confusion matrix", lambda ax: _verification_confusion(ax, d, s, t, m)),
    ]
    gender = m.get("gender")
    if isinstance(gender, dict):
        panels += [
            ("Gender confusion matrix", lambda ax: _gender_confusion(ax, gender)),
            ("Gender per class", lambda ax: _gender_bars(ax, gender)),
        ]
    else:
        panels.append(("Gender", lambda ax: _not_available(
            ax, "Gender", "not available\n(no trained gender head or no gender labels)")))
    panels.append(("Summary", lambda ax: _summary(ax, m)))
    distortions = m.get("distortions")
    if isinstance(distortions, dict) and distortions:
        panels.append(("Accuracy per distortion", lambda ax: _distortions(ax, distortions)))
    groups = m.get("groups")
    if isinstance(groups, dict):
        for column, entry in groups.items():
            if isinstance(entry, dict) and entry.get("groups"):
                panels.append((f"FMR / FNMR by {column}",
                               lambda ax, c=column, e=entry: _group_rates(ax, c, e)))
    return panels


def _not_available(ax, title: str, why: str = "not available") -> None:
    ax.set_title(title, parse_math=False)
    ax.text(0.5, 0.5, why, ha="center", va="center", color="#777777", fontsize=11,
            transform=ax.transAxes, parse_math=False)
    ax.set_xticks([])
    ax.set_yticks([])


def _finite(d: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    keep = np.isfinite(d)
    return d[keep], s[keep], int((~keep).sum())


# verification ---------------------------------------------------------------------------

def _histogram(ax, d, s, t) -> None:
    df, sf, n_absent = _finite(d, s)
    title = "Distances"
    if n_absent:
        title += f" ({n_absent} pair{'s' if n_absent != 1 else ''} without a verdict left out)"
    if df.size == 0:
        _not_available(ax, title, "no pair with a distance")
        return
    lo, hi = float(df.min()), float(df.max())
    if t is not None:
        lo, hi = min(lo, t), max(hi, t)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41)
    genuine, impostor = df[sf], df[~sf]
    if genuine.size:
        ax.hist(genuine, bins=bins, color=_GENUINE, alpha=0.6,
                label=f"genuine / same person ({genuine.size})")
    if impostor.size:
        ax.hist(impostor, bins=bins, color=_IMPOSTOR, alpha=0.6,
                label=f"impostor / different people ({impostor.size})")
    if t is not None:
        ax.axvline(t, color="black", linestyle="--", linewidth=1.2, label=f"threshold {t:.3f}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("distance")
    ax.set_ylabel("pairs")
    ax.legend(fontsize=8)


def _operating_point(df, sf, t) -> tuple[float, float] | None:
    """(FMR, TPR) at threshold ``t`` on finite distances, None when not defined."""
    if t is None or not sf.any() or sf.all():
        return None
    return float(np.mean(df[~sf] <= t)), float(np.mean(df[sf] <= t))


def _roc(ax, d, s, t, m) -> None:
    df, sf, _ = _finite(d, s)
    if df.size == 0 or sf.all() or not sf.any():
        _not_available(ax, "ROC", "needs genuine and impostor pairs with a distance")
        return
    from siamface.metrics import roc_auc, roc_curve

    fpr, tpr, _ = roc_curve(df, sf)
    auc = num(get(m, "verification", "auc"))
    if auc is None:
        auc = roc_auc(df, sf)
    n_impostor = int((~sf).sum())
    if n_impostor >= 100:  # the low-FMR end is what matters; show it on a log axis
        floor = 0.5 / n_impostor
        ax.set_xscale("log")
        ax.set_xlim(floor, 1.0)
        fpr = np.maximum(fpr, floor)
    ax.plot(fpr, tpr, color=_BLUE, linewidth=1.6, label=f"ROC (AUC {auc:.4f})")
    point = _operating_point(df, sf, t)
    if point is not None:
        ax.plot([max(point[0], ax.get_xlim()[0])], [point[1]], "o", color="black",
                label=f"threshold {t:.3f}")
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("false positive rate (FMR)")
    ax.set_ylabel("true positive rate (TAR)")
    ax.set_title("ROC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _det(ax, d, s, t, m) -> None:
    df, sf, _ = _finite(d, s)
    if df.size == 0 or sf.all() or not sf.any():
        _not_available(ax, "DET", "needs genuine and impostor pairs with a distance")
        return
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from siamface.metrics import det_curve

    fmr, fnmr, _ = det_curve(df, sf)
    # a rate of 0 sits on the axis edge: half a pair below the finest step, at most 1%
    floor = min(0.5 / max(int(sf.sum()), int((~sf).sum())), 1e-2)
    fmr, fnmr = np.maximum(fmr, floor), np.maximum(fnmr, floor)
    ax.plot(fmr, fnmr, color=_BLUE, linewidth=1.6, drawstyle="steps-post", label="DET")
    ax.plot([floor, 1.0], [floor, 1.0], color="#999999", linewidth=0.8, linestyle=":")
    eer = num(get(m, "verification", "eer"))
    if eer is not None:
        e = max(eer, floor)
        ax.plot([e], [e], "s", color=_ORANGE, label=f"EER {eer:.2%}")
    if t is not None:
        point = (float(np.mean(df[~sf] <= t)), float(np.mean(df[sf] > t)))
        ax.plot([max(point[0], floor)], [max(point[1], floor)], "o", color="black",
                label=f"threshold {t:.3f}: FMR {point[0]:.2%}, FNMR {point[1]:.2%}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(floor, 1.0)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(_percent_tick))
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("false match rate (FMR)")
    ax.set_ylabel("false non-match rate (FNMR)")
    ax.set_title("DET")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper right")


def _percent_tick(value: float, _pos: Any = None) -> str:
    """A log-axis tick as a percentage: 0.01% ... 100%."""
    pct = value * 100.0
    return f"{pct:.{max(0, -math.floor(math.log10(pct)))}f}%" if pct > 0 else "0%"


def _confusion(ax, matrix: Any, rows: list[str], cols: list[str], title: str,
               ylabel: str, xlabel: str) -> None:
    cm = np.asarray(matrix, dtype=np.float64)
    if cm.ndim != 2 or cm.shape != (len(rows), len(cols)) or not np.isfinite(cm).all():
        _not_available(ax, title, "no confusion matrix")
        return
    totals = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            pct = f"{share[i, j]:.1%}" if totals[i, 0] > 0 else "\u2013"
            ax.text(j, i, f"{round(float(cm[i, j]))}\n{pct}", ha="center", va="center",
                    fontsize=11, color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks(range(len(cols)), [_clip(c, 20) for c in cols], parse_math=False)
    ax.set_yticks(range(len(rows)), [_clip(r, 20) for r in rows], parse_math=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)


def _verification_confusion(ax, d, s, t, m) -> None:
    matrix = get(m, "verification", "confusion_matrix")
    if matrix is None and t is not None:
        df, sf, _ = _finite(d, s)
        pred = df <= t
        matrix = [[int(np.sum(sf & pred)), int(np.sum(sf & ~pred))],
                  [int(np.sum(~sf & pred)), int(np.sum(~sf & ~pred))]]
    if matrix is None:
        _not_available(ax, "Verification confusion matrix", "no threshold")
        return
    title = "Verification (counts, % of row)"
    if t is not None:
        title += f" at {t:.3f}"
    _confusion(ax, matrix, ["same", "different"], ["same", "different"], title,
               "truth", "verdict")


# gender ---------------------------------------------------------------------------------

def _gender_classes(gender: dict[str, Any]) -> list[str]:
    classes = gender.get("classes")
    if not classes:
        classes = list((gender.get("per_class") or {}).keys()) or ["male", "female"]
    return [str(c) for c in classes]


def _gender_confusion(ax, gender: dict[str, Any]) -> None:
    classes = _gender_classes(gender)
    matrix = gender.get("confusion_matrix")
    if matrix is None:
        _not_available(ax, "Gender confusion matrix", "no confusion matrix")
        return
    _confusion(ax, matrix, classes, classes, "Gender (counts, % of row)", "truth", "predicted")


def _gender_bars(ax, gender: dict[str, Any]) -> None:
    per_class = gender.get("per_class") or {}
    classes = [c for c in _gender_classes(gender) if isinstance(per_class.get(c), dict)]
    if not classes:
        _not_available(ax, "Gender per class", "no per-class figures")
        return
    names = ("precision", "recall", "f1")
    colours = (_BLUE, _ORANGE, _GENUINE)
    x = np.arange(len(classes))
    width = 0.26
    for k, (name, colour) in enumerate(zip(names, colours)):
        values = [num(per_class[c].get(name)) for c in classes]
        heights = [np.nan if v is None else v for v in values]
        bars = ax.bar(x + (k - 1) * width, heights, width, color=colour,
                      label="F1" if name == "f1" else name)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.2f}", ha="center",
                        va="bottom", fontsize=7)
    labels = [f"{c}\n(n={per_class[c].get('support', '?')})" for c in classes]
    ax.set_xticks(x, labels, parse_math=False)
    ax.set_ylim(0.0, 1.12)
    ax.set_title("Gender: precision / recall / F1 per class", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")


# summary, distortions, groups -----------------------------------------------------------

def _summary(ax, m: dict[str, Any]) -> None:
    rows = [
        ("verification\naccuracy", num(get(m, "verification", "accuracy"))),
        ("verification\nmacro F1", num(get(m, "verification", "macro_f1"))),
    ]
    gender = m.get("gender")
    if isinstance(gender, dict):
        rows += [("gender\naccuracy", num(gender.get("accuracy"))),
                 ("gender\nmacro F1", num(gender.get("macro_f1")))]
    else:
        rows += [("gender\naccuracy", None), ("gender\nmacro F1", None)]
    y = np.arange(len(rows))[::-1]
    values = [np.nan if v is None else v for _, v in rows]
    ax.barh(y, values, color=[_BLUE, _BLUE, _ORANGE, _ORANGE][:len(rows)], height=0.6)
    for yi, (_, v) in zip(y, rows):
        text = "not available" if v is None else f"{v:.2%}"
        ax.text(0.02 if v is None or v < 0.3 else v - 0.02, yi, text, va="center",
                ha="left" if v is None or v < 0.3 else "right",
                color="#555555" if v is None or v < 0.3 else "white", fontsize=10)
    ax.set_yticks(y, [name for name, _ in rows])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.set_xlim(0.0, 1.0)
    ax.set_title("Accuracy and macro F1", fontsize=10)


def _distortion_order(kinds: list[str]) -> list[str]:
    return (["none"] if "none" in kinds else []) + sorted(k for k in kinds if k != "none")


def _distortions(ax, distortions: dict[str, Any]) -> None:
    kinds = _distortion_order([str(k) for k in distortions if isinstance(distortions[k], dict)])
    if not kinds:
        _not_available(ax, "Accuracy per distortion")
        return
    acc, low, high = [], [], []
    for kind in kinds:
        entry = distortions[kind]
        a = num(entry.get("accuracy"))
        ci = entry.get("accuracy_ci") or [None, None]
        lo = num(ci[0]) if len(ci) > 0 else None
        hi = num(ci[1]) if len(ci) > 1 else None
        acc.append(np.nan if a is None else a)
        low.append(0.0 if a is None or lo is None else max(a - lo, 0.0))
        high.append(0.0 if a is None or hi is None else max(hi - a, 0.0))
    x = np.arange(len(kinds))
    colours = ["#888888" if k == "none" else _BLUE for k in kinds]
    ax.bar(x, acc, color=colours, yerr=[low, high], capsize=4, ecolor="black")
    for xi, a in zip(x, acc):
        if not np.isnan(a):
            ax.text(xi, 0.03, f"{a:.1%}", ha="center", va="bottom", fontsize=7, color="white",
                    rotation=90 if len(kinds) > 6 else 0)
    labels = [f"{_clip(k, 18)}\n({distortions[k].get('pairs', '?')})" for k in kinds]
    ax.set_xticks(x, labels, parse_math=False, fontsize=8 if len(kinds) <= 6 else 7,
                  rotation=0 if len(kinds) <= 6 else 45)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Verification accuracy per distortion (pairs; CI bars)", fontsize=10)


def _group_rates(ax, column: str, entry: dict[str, Any]) -> None:
    groups = {str(k): v for k, v in entry["groups"].items() if isinstance(v, dict)}
    values = sorted(groups)
    fmr = [num(groups[v].get("fmr")) for v in values]
    fnmr = [num(groups[v].get("fnmr")) for v in values]
    x = np.arange(len(values))
    width = 0.4
    many = len(values) > 6
    for offset, rates, colour, label in ((-width / 2, fmr, _IMPOSTOR, "FMR (false match)"),
                                         (width / 2, fnmr, _BLUE, "FNMR (false non-match)")):
        ax.bar(x + offset, [np.nan if v is None else v for v in rates], width, color=colour,
               label=label)
        if len(values) <= 12:
            for xi, v in zip(x, rates):
                ax.text(xi + offset, 0.0 if v is None else v, "n/a" if v is None else f"{v:.1%}",
                        ha="center", va="bottom", fontsize=7, color="#444444")
    labels = [f"{_clip(v, 16)}\n({groups[v].get('pairs', '?')})" for v in values]
    ax.set_xticks(x, labels, parse_math=False, fontsize=7 if many else 8,
                  rotation=45 if many else 0)
    ax.set_xlim(-0.6, len(values) - 0.4)
    top = max([v for v in fmr + fnmr if v is not None] + [0.01])
    ax.set_ylim(0.0, top * 1.25)
    ratios = entry.get("ratios") or {}
    parts = []
    for name in ("fmr", "fnmr"):
        r = num(ratios.get(name))
        if r is not None:
            parts.append(f"{name.upper()} x{r:.2f}")
    title = _clip(f"FMR / FNMR by {column}", 60)
    if parts:
        title += "  (worst/best: " + ", ".join(parts) + ")"
    ax.set_title(title, fontsize=10, parse_math=False)
    ax.set_ylabel("rate")
    ax.legend(fontsize=8)
