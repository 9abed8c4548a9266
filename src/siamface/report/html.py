"""The report: one self-contained HTML file (inline CSS, images as data: URIs, no script,
no link to any host) that a person opens and reads.

Sections, each with an id a test or a link can find: ``model``, ``data``, ``threshold``,
``verification``, ``gender``, ``distortions`` (when measured), ``groups`` (when measured),
``dashboard``, ``samples``. Every text taken from the metrics is escaped (dataset paths,
group values and distortion names are user data).
"""

from __future__ import annotations

import base64
import html
from typing import Any

from siamface.report._common import get, num

__all__ = ["SECTION_IDS", "report_html"]

SECTION_IDS = ("model", "data", "threshold", "verification", "gender", "distortions",
               "groups", "dashboard", "samples")
"""Every section id; ``distortions`` and ``groups`` appear only when the metrics hold them."""

_NA = "\u2013"  # shown for a missing figure

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #222; margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1280px;
       line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
h2 { font-size: 1.25rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem;
     margin-top: 2rem; }
h3 { font-size: 1.05rem; margin-bottom: .3rem; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { border: 1px solid #d8d8d8; padding: .3rem .65rem; text-align: left;
         vertical-align: top; }
th { background: #f3f5f8; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { width: 14rem; }
.flag { background: #fff3cd; color: #7a4b00; border: 1px solid #e6c200; border-radius: 3px;
        padding: 0 .35rem; font-weight: 600; white-space: nowrap; }
.note { color: #666; font-size: .88rem; }
img { max-width: 100%; height: auto; border: 1px solid #e2e2e2; }
code { background: #f4f4f4; padding: 0 .25rem; border-radius: 3px; word-break: break-all; }
"""


# formatting -----------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _pct(value: Any, digits: int = 2) -> str:
    v = num(value)
    return _NA if v is None else f"{v * 100:.{digits}f}%"


def _dec(value: Any, digits: int = 4) -> str:
    v = num(value)
    return _NA if v is None else f"{v:.{digits}f}"


def _int(value: Any) -> str:
    v = num(value)
    return _NA if v is None else f"{round(v):,}"


def _ci(ci: Any, fmt=_pct) -> str:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return _NA
    if num(ci[0]) is None or num(ci[1]) is None:
        return _NA
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _with_ci(value: Any, ci: Any) -> str:
    interval = _ci(ci)
    return _pct(value) if interval == _NA else f"{_pct(value)} {interval}"


def _yes_no(value: Any) -> str:
    if value is None:
        return _NA
    return "on" if bool(value) else "off"


def _text(value: Any) -> str:
    return _NA if value is None or value == "" else str(value)


class _Cell(str):
    """A cell's HTML, already escaped (a plain str cell is escaped by the table)."""


def _cell(value: Any, numeric: bool = False) -> str:
    inner = value if isinstance(value, _Cell) else _e(value)
    return f'<td class="n">{inner}</td>' if numeric else f"<td>{inner}</td>"


def _table(header: list[str], rows: list[list[Any]], numeric_from: int = 1,
           numeric_to: int | None = None, css: str = "") -> str:
    """Columns ``numeric_from`` up to (not including) ``numeric_to`` are right-aligned."""
    end = len(header) if numeric_to is None else numeric_to
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(_cell(v, numeric_from <= i < end) for i, v in enumerate(row))
        + "</tr>"
        for row in rows
    )
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th>{_cell(v)}</tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _section(ident: str, title: str, content: str) -> str:
    return f'<section id="{ident}"><h2>{_e(title)}</h2>{content}</section>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


# sections -------------------------------------------------------------------------------

def _sha_of_id(model_id: Any) -> str | None:
    """The hash in a service's model id ("checkpoint:<sha256>:flip=1")."""
    for part in str(model_id or "").split(":"):
        if len(part) >= 32 and all(c in "0123456789abcdef" for c in part):
            return part
    return None


def _model(m: dict[str, Any]) -> str:
    model = m.get("model") or {}
    sha = model.get("sha256") or _sha_of_id(model.get("id"))
    rows = [
        ("description", _text(model.get("description"))),
        ("path", _text(model.get("path"))),
        ("backbone", _text(model.get("backbone"))),
        ("sha256", _Cell(f"<code>{_e(sha[:12])}</code>") if sha else _NA),
        ("flip averaging", _yes_no(model.get("flip"))),
        ("crop", _text(model.get("crop"))),
        ("face selection", _text(model.get("select"))),
        ("no-face fallback policy", _text(model.get("fallback_policy"))),
    ]
    return _section("model", "Model", _kv(rows))


def _data(m: dict[str, Any]) -> str:
    data = m.get("data") or {}
    pairs = _int(data.get("pairs"))
    if data.get("genuine") is not None or data.get("impostor") is not None:
        pairs += (f" ({_int(data.get('genuine'))} same person, "
                  f"{_int(data.get('impostor'))} different people)")
    protocol = _text(data.get("protocol"))
    if data.get("seed") is not None and data.get("protocol") == "generated":
        protocol += f", seed {data.get('seed')}"
    rows = [
        ("description", _text(data.get("description"))),
        ("path", _text(data.get("path"))),
        ("layout", _text(data.get("layout"))),
        ("images", _int(data.get("images"))),
        ("persons", _int(data.get("persons"))),
        ("pairs", pairs),
        ("protocol", protocol),
        ("images without a face", _int(data.get("images_without_face"))),
        ("images unreadable", _int(data.get("images_unreadable"))),
    ]
    optional = [("pairs file", "pairs_file", _text), ("pairs skipped", "pairs_skipped", _int),
                ("images in the dataset", "dataset_images", _int),
                ("images with a gender label", "genders_known", _int),
                ("faces detected", "images_detected", _int),
                ("embeddings computed (not cached)", "embeddings_computed", _int)]
    rows += [(label, fmt(data[key])) for label, key, fmt in optional
             if data.get(key) is not None]
    retried = data.get("images_found_by_retry")
    if isinstance(retried, dict) and retried:
        rows.append(("faces found by a detection retry", _text(", ".join(
            f"{name} {count}" for name, count in retried.items()))))
    distorted = data.get("distorted")
    if isinstance(distorted, dict) and distorted.get("path"):
        rows.append(("distorted copies", _text(distorted.get("path"))))
    return _section("data", "Data", _kv(rows))


def _threshold(m: dict[str, Any]) -> str:
    threshold = m.get("threshold") or {}
    rows = [("threshold (distance)", _dec(threshold.get("value"))),
            ("chosen by", _text(threshold.get("source")))]
    calibration = threshold.get("calibration")
    if isinstance(calibration, dict):
        rows += [(f"calibration: {k}", _text(v)) for k, v in calibration.items()
                 if not isinstance(v, (dict, list))]
    best = num(get(m, "verification", "best_threshold"))
    if best is not None:
        why = "chosen on the test pairs themselves: optimistic, for comparison only"
        rows.append(("best threshold on these pairs", f"{best:.4f} ({why})"))
    note = ('<p class="note">A pair is declared the same person when the distance between '
            "its two embeddings is at most the threshold.</p>")
    return _section("threshold", "Operating threshold", _kv(rows) + note)


def _level(m: dict[str, Any]) -> str:
    level = num(get(m, "bootstrap", "level"))
    return f"{level:.0%} CI" if level is not None else "CI"


def _verification(m: dict[str, Any]) -> str:
    v = m.get("verification") or {}
    level = _level(m)
    rows: list[list[Any]] = [
        ["accuracy at the threshold", _pct(v.get("accuracy")), _ci(v.get("accuracy_ci")), ""],
        ["balanced accuracy", _pct(v.get("balanced_accuracy")), _NA, ""],
        ["macro F1", _dec(v.get("macro_f1")), _NA, ""],
        ["FMR (false match rate)", _pct(v.get("fmr")), _NA, "different people declared a match"],
        ["FNMR (false non-match rate)", _pct(v.get("fnmr")), _NA,
         "same person declared no match"],
    ]
    kfold = v.get("kfold")
    if isinstance(kfold, dict) and num(kfold.get("mean")) is not None:
        folds = kfold.get("folds")
        n_folds = len(folds) if isinstance(folds, (list, tuple)) else folds
        rows.append([f"{_text(n_folds)}-fold accuracy (mean \u00b1 std)",
                     f"{_pct(kfold.get('mean'))} \u00b1 {_pct(kfold.get('std'))}", _NA,
                     "threshold chosen on the other folds"])
    rows += [
        ["ROC AUC", _dec(v.get("auc")), _NA, ""],
        ["EER (equal error rate)", _pct(v.get("eer")), _NA,
         f"at distance {_dec(v.get('eer_threshold'))}" if num(v.get("eer_threshold")) is not None
         else ""],
    ]
    tar = v.get("tar_at_far") or {}
    for key in sorted(tar, key=lambda k: -(num(k) or 0.0)):
        entry = tar[key]
        if not isinstance(entry, dict):
            continue
        far = num(key)
        label = f"TAR at FAR {far:g}" if far is not None else f"TAR at FAR {key}"
        fa, imp = entry.get("false_accepts"), entry.get("impostors")
        note = _e(f"{_int(fa)} false accepts of {_int(imp)} impostor pairs")
        if num(entry.get("threshold")) is not None:
            note += _e(f", distance \u2264 {_dec(entry.get('threshold'))}")
        if entry.get("few_false_accepts"):
            note += (f' <span class="flag">rests on {_e(_int(fa))} false accept'
                     f'{"" if num(fa) == 1 else "s"}</span>')
        rows.append([label, _pct(entry.get("tar")), _ci(entry.get("ci")), _Cell(note)])
    if v.get("no_verdict_pairs") is not None:
        rows.append(["pairs without a verdict", _int(v.get("no_verdict_pairs")), _NA,
                     "a face was absent; not counted above"])
    table = _table(["metric", "value", level, "note"], rows, numeric_from=1, numeric_to=3)
    unit = get(m, "bootstrap", "unit")
    samples = get(m, "bootstrap", "samples")
    note = ""
    if samples is not None:
        note = (f'<p class="note">Confidence intervals: {_e(_int(samples))} bootstrap resamples'
                f' by {_e(_text(unit))}.</p>')
    cm = v.get("confusion_matrix")
    extra = ""
    if isinstance(cm, (list, tuple)) and len(cm) == 2:
        try:
            extra = "<h3>Confusion matrix</h3>" + _table(
                ["truth \\ verdict", "same", "different"],
                [["same person", _int(cm[0][0]), _int(cm[0][1])],
                 ["different people", _int(cm[1][0]), _int(cm[1][1])]])
        except (TypeError, IndexError):
            extra = ""
    return _section("verification", "Verification", table + note + extra)


def _gender(m: dict[str, Any]) -> str:
    g = m.get("gender")
    if not isinstance(g, dict):
        return _section("gender", "Gender", '<p class="note">Not available: the model has no '
                        "trained gender head, or the data has no gender labels.</p>")
    per_class = g.get("per_class") or {}
    classes = g.get("classes") or list(per_class)
    rows = []
    for name in classes:
        entry = per_class.get(name) or {}
        rows.append([name, _dec(entry.get("precision")), _dec(entry.get("recall")),
                     _dec(entry.get("f1")), _int(entry.get("support"))])
    table = _table(["class", "precision", "recall", "F1", "support"], rows)
    summary = _kv([
        ("accuracy", _pct(g.get("accuracy"))),
        ("balanced accuracy", _pct(g.get("balanced_accuracy"))),
        ("macro F1", _dec(g.get("macro_f1"))),
        ("ROC AUC", _dec(g.get("roc_auc"))),
        ("faces with a label", _int(g.get("n"))),
        ("faces without a label", _int(g.get("n_unknown"))),
    ])
    return _section("gender", "Gender", table + summary)


def _distortions(m: dict[str, Any]) -> str:
    dist = m.get("distortions")
    if not isinstance(dist, dict) or not dist:
        return ""
    kinds = [k for k in dist if isinstance(dist[k], dict)]
    kinds = (["none"] if "none" in kinds else []) + sorted(k for k in kinds if k != "none")
    rows = []
    for kind in kinds:
        e = dist[kind]
        rows.append([kind, _int(e.get("pairs")), _pct(e.get("accuracy")),
                     _ci(e.get("accuracy_ci")), _pct(e.get("fmr")), _pct(e.get("fnmr")),
                     _pct(e.get("detection_rate")), _pct(e.get("retry_detection_rate")),
                     _int(e.get("no_verdict_pairs"))])
    table = _table(["distortion", "pairs", "accuracy", _level(m), "FMR", "FNMR",
                    "faces detected", "by a retry", "no verdict"], rows)
    note = '<p class="note">"none" is the undistorted pairs.</p>' if "none" in kinds else ""
    return _section("distortions", "Per distortion", table + note)


def _groups(m: dict[str, Any]) -> str:
    groups = m.get("groups")
    if not isinstance(groups, dict) or not groups:
        return ""
    parts = []
    for column, entry in groups.items():
        if not isinstance(entry, dict):
            continue
        members = entry.get("groups") or {}
        rows = []
        for value in sorted(members, key=str):
            e = members[value] if isinstance(members[value], dict) else {}
            gender = e.get("gender") if isinstance(e.get("gender"), dict) else {}
            rows.append([value, _int(e.get("images")), _int(e.get("pairs")),
                         _int(e.get("genuine")), _int(e.get("impostor")),
                         _pct(e.get("accuracy")),
                         _with_ci(e.get("fmr"), e.get("fmr_ci")),
                         _with_ci(e.get("fnmr"), e.get("fnmr_ci")),
                         _dec(e.get("best_threshold")), _pct(e.get("best_accuracy")),
                         _pct(gender.get("accuracy"))])
        table = _table(["group", "images", "pairs", "genuine", "impostor", "accuracy",
                        "FMR (95% CI)", "FNMR (95% CI)", "own best threshold", "accuracy there",
                        "gender accuracy"],
                       rows)
        ratios = entry.get("ratios") or {}
        ratio_rows = [["FMR", _dec(ratios.get("fmr"), 2)], ["FNMR", _dec(ratios.get("fnmr"), 2)]]
        parts.append(f"<h3>By {_e(column)}</h3>" + table
                     + _table(["worst / best group", "ratio"], ratio_rows))
    if not parts:
        return ""
    return _section("groups", "Per group", "".join(parts))


def _image_section(ident: str, title: str, png: bytes | None, missing: str) -> str:
    if not png:
        return _section(ident, title, f'<p class="note">{_e(missing)}</p>')
    return _section(ident, title, _img(png, title))


# the page -------------------------------------------------------------------------------

def report_html(evaluation, *, dashboard: bytes, samples: bytes | None) -> str:
    """The report of ``evaluation`` as one HTML document (a str); ``dashboard`` and
    ``samples`` are the PNGs from :func:`dashboard_png` / :func:`samples_png` (``samples``
    None: the section says there are none)."""
    m = evaluation.metrics
    model = get(m, "model", "description") or get(m, "model", "backbone") or "model"
    data = get(m, "data", "description") or get(m, "data", "path") or "data"
    title = f"siamface evaluation: {model} on {data}"
    seconds = num(m.get("seconds"))
    sub = " \u00b7 ".join(part for part in (
        f"evaluated in {seconds:.1f} s" if seconds is not None else "",
        f"on {m['created']}" if m.get("created") else "",
        f"siamface {m['siamface_version']}" if m.get("siamface_version") else "",
    ) if part)
    body = "".join([
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="sub">{_e(sub)}</p></header>' if sub else "</header>",
        _model(m), _data(m), _threshold(m), _verification(m), _gender(m), _distortions(m),
        _groups(m),
        _image_section("dashboard", "Dashboard", dashboard, "no dashboard"),
        _image_section("samples", "Samples", samples, "no samples in this evaluation"),
    ])
    # the policy forbids every load but the inline style and the embedded images
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>\n"
    )
