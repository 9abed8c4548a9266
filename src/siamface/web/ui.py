"""The web UI (Gradio): Verify, Analyze, Dataset test, Identify and Models tabs.

Every handler calls :mod:`siamface.web.actions` (the functions the REST API calls too), so the
bounded inference queue, the pixel limit and the allowed server paths apply to the UI as to
the API. A siamface error (or a full queue) becomes a visible message, never a traceback.

Offline and private by construction: analytics are off (set before Gradio is imported), the
theme uses system fonts only (no font is fetched from any host), server-side rendering is
off, :func:`mount_ui` never shares, and uploads (biometric data) are removed from Gradio's
temporary folder a minute after they arrive (``delete_cache``). Gradio is imported by this
module only.
"""

from __future__ import annotations

import contextvars
import functools
import html
import io
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from siamface import examples
from siamface.errors import ConfigError, SiamfaceError
from siamface.web import actions
from siamface.web.state import Busy

__all__ = ["CACHE_DELETE", "build_ui", "mount_options", "mount_ui", "theme"]

log = logging.getLogger(__name__)

CACHE_DELETE = (60, 60)
"""Gradio's ``delete_cache``: every 60 s, remove the uploads and results older than 60 s."""
CROP_CHOICES = [("aligned", "aligned"), ("padded", "padded"), ("center (fast)", "center")]
CROP_HELP = ("aligned: rotated and scaled by the 5 landmarks; padded: the face box with a "
             "margin; center: a fast centre crop, no detection")
FALLBACK_CHOICES = [("auto", "auto"), ("always", "always"), ("never", "never")]
FALLBACK_HELP = ("the centre crop is used as the face: auto, when it looks like a face; "
                 "always; never (no face, no verdict)")
MODEL_HELP = "the checkpoints this server offers; add one on the Models tab"
DISPLAY_SIDE = 720  # annotated photos are shown at most this many pixels on a side

_CSS = """
#verdict .siamface-verdict { font-size: 2rem; font-weight: 700; letter-spacing: .02em; }
.siamface-match { color: #15803d; }
.siamface-nomatch { color: #b91c1c; }
.siamface-noface { color: #6b7280; }
.siamface-note { color: #92400e; }
.siamface-error { color: #b91c1c; font-weight: 600; }
.siamface-small { color: #4b5563; font-size: .9rem; }
"""


def theme():
    """Gradio's default look with system fonts: nothing for the browser to fetch from a font
    host (a ``GoogleFont`` would put a fonts.googleapis.com stylesheet into the page)."""
    return gr.themes.Default(
        font=[gr.themes.Font("system-ui"), gr.themes.Font("-apple-system"), "Segoe UI",
              "Roboto", "sans-serif"],
        font_mono=[gr.themes.Font("ui-monospace"), "SFMono-Regular", "Menlo", "Consolas",
                   "monospace"],
    )


def mount_options(state) -> dict[str, Any]:
    """The keyword arguments of :func:`gradio.mount_gradio_app` this UI needs (Gradio 6 takes
    the theme and CSS there, not in ``Blocks``): the system-font theme, no server-side
    rendering, the request size limit as Gradio's upload limit, no PWA, MCP or monitoring
    endpoints, and a footer without links to other hosts."""
    return {
        "theme": theme(),
        "css": _CSS,
        "ssr_mode": False,
        "max_file_size": int(state.config.max_request_bytes),
        "footer_links": ["settings"],
        "pwa": False,
        "mcp_server": False,
        "enable_monitoring": False,
        "show_error": False,
    }


def mount_ui(app, state, path: str = "/", **overrides: Any):
    """Mount :func:`build_ui` on the FastAPI ``app`` at ``path`` with :func:`mount_options`
    (``overrides`` replace single options). Returns ``app``."""
    options = {**mount_options(state), **overrides}
    return gr.mount_gradio_app(app, build_ui(state), path=path, **options)


# -- messages ------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, Busy):
        return str(exc)
    if isinstance(exc, SiamfaceError):
        return str(exc)
    log.exception("unexpected error in a web UI handler")
    return (f"something went wrong on the server ({type(exc).__name__}); the server log has "
            "the details")


def _error_html(text: str) -> str:
    return f'<p class="siamface-error">{_esc(text)}</p>'


def _guard(fn, outputs: list, message, clear: list):
    """``fn`` with its errors shown: a warning toast and the message in ``message``; the
    components in ``clear`` are emptied (no stale result stays next to an error; a
    ``(component, value)`` pair sets that value instead) and the other outputs keep theirs."""
    cleared = [c if isinstance(c, tuple) else (c, None) for c in clear]

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every error becomes a message, no traceback
            text = _error_text(exc)
            gr.Warning(text)
            values = []
            for component in outputs:
                if component is message:
                    values.append(_error_html(text))
                else:
                    values.append(next((v for c, v in cleared if c is component),
                                       gr.update()))
            return tuple(values) if len(values) != 1 else values[0]

    return run


# -- uploads ---------------------------------------------------------------------------------


def _read_upload(path: str | None, what: str, limit: int) -> tuple[str, bytes]:
    """``(file name, bytes)`` of a file Gradio received (it passes its own cache path)."""
    if not path:
        raise ConfigError(f"no {what} given: upload one (or pick an example) first")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"the uploaded {what} is no longer on the server (uploads are "
                          "deleted a minute after they arrive): upload it again") from None
    if len(data) > limit:
        raise ConfigError(f"the {what} is larger than the limit of {limit} bytes")
    return Path(path).name, data


def _pixels(state, item) -> np.ndarray:
    """The decoded image of an upload, for drawing on (through the inference queue, under
    the server's pixel limit)."""
    return state.run(actions.decode, state, item)[1]


# -- drawing -----------------------------------------------------------------------------------

_GREEN, _AMBER, _GREY = (22, 163, 74), (217, 119, 6), (107, 114, 128)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _gender_text(face) -> str:
    if not face.has_face:
        return "no face"
    if face.gender is None:
        return "gender: no trained head"
    return f"{face.gender.label} {face.gender.probability:.0%}"


def _annotate(pixels: np.ndarray, faces, *, center_fraction: float = 0.7,
              numbered: bool = False) -> np.ndarray:
    """``pixels`` (scaled to at most :data:`DISPLAY_SIDE`) with each face's box, landmarks
    and gender drawn; a fallback centre crop as an amber box, an absent face as a note."""
    image = Image.fromarray(pixels).convert("RGB")
    scale = min(1.0, DISPLAY_SIDE / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)),
                              max(1, round(image.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    font = _font(max(12, round(max(image.size) / 32)))
    for n, face in enumerate(faces, 1):
        label = _gender_text(face)
        if numbered:
            label = f"{n}: {label}"
        if face.box is not None:
            box = [v * scale for v in face.box]
            colour = _GREEN
        elif face.has_face or face.fallback is not None:  # the centre crop that was judged
            w, h = image.size
            side = min(w, h) * center_fraction
            box = [(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2]
            colour = _AMBER if face.has_face else _GREY
            label += " (centre crop)" if face.has_face else ""
        else:
            box, colour = None, _GREY
        if box is None:
            draw.text((8, 8), label, fill=colour, font=font, stroke_width=2,
                      stroke_fill=(255, 255, 255))
            continue
        draw.rectangle(box, outline=colour, width=width)
        for x, y in (face.landmarks or []):
            r = width + 1
            draw.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r],
                         fill=(37, 99, 235), outline=(255, 255, 255))
        top = max(0, box[1] - font.size - 2 * width) if hasattr(font, "size") else box[1]
        draw.text((box[0], top), label, fill=colour, font=font, stroke_width=2,
                  stroke_fill=(255, 255, 255))
    return np.asarray(image)


def _png(data: bytes | None):
    return None if data is None else Image.open(io.BytesIO(data)).convert("RGB")


# -- verify ---------------------------------------------------------------------------------


def _verdict_html(result) -> str:
    from siamface.render import verdict_text

    text = verdict_text(result)
    css = ("siamface-match" if result.is_match else "siamface-nomatch"
           if result.is_match is False else "siamface-noface")
    return f'<div class="siamface-verdict {css}">{_esc(text)}</div>'


def _distance_html(result) -> str:
    source = result.threshold_source
    source = "set by you" if source == "user" else source
    if result.distance is None:
        return (f'<p>no verdict (a face is absent); threshold {result.threshold:.3f} '
                f'<span class="siamface-small">({_esc(source)})</span></p>')
    sign = "≤" if result.distance <= result.threshold else ">"
    return (f"<p>distance <b>{result.distance:.3f}</b> {sign} threshold "
            f'{result.threshold:.3f} <span class="siamface-small">({_esc(source)})</span></p>')


def _face_notes(faces: dict[str, Any], policy: str) -> list[str]:
    notes = []
    for name, face in faces.items():
        score = "" if face.face_score is None else f", face score {face.face_score:.3f}"
        if not face.has_face:
            notes.append(f"No face in {name}: {face.no_face}.")
        elif face.fallback is not None:
            what = "centre crop" if face.fallback == "center-crop" else face.fallback
            notes.append(f"No face was detected in {name}: the {what} was used as the face "
                         f"(fallback policy {policy}{score}).")
        elif not face.detected:
            notes.append(f"{name}: centre crop mode, no detection{score}.")
        elif face.detected_by not in (None, "detector"):
            notes.append(f"The face in {name} was found on a restored copy of the photo "
                         f"({face.detected_by}){score}.")
        if face.has_face and face.restored is not None:
            notes.append(f"The face chip of {name} looked damaged and was restored before "
                         f"comparison ({face.restored}).")
    return notes


def _notes_html(notes: list[str]) -> str:
    return "".join(f'<p class="siamface-note">{_esc(n)}</p>' for n in notes)


def _gender_html(face, which: str) -> str:
    return (f'<p><span class="siamface-small">{_esc(which)}:</span> '
            f"<b>{_esc(_gender_text(face))}</b></p>")


class _UI:
    """The handlers, bound to one :class:`~siamface.web.state.AppState`."""

    def __init__(self, state):
        self.state = state
        self.limit = int(state.config.max_request_bytes)
        self.cache: Path | None = None  # Gradio's upload folder (set by build_ui)

    # models ----------------------------------------------------------------------------
    def model_names(self) -> list[str]:
        return [m["name"] for m in self.state.models() if "error" not in m]

    def model_defaults(self, model: str | None) -> tuple[float, str]:
        """The calibrated threshold and crop mode of ``model`` (loaded, when it is not yet,
        through the inference queue)."""
        service = self.state.run(self.state.service, model or None)
        return float(service.threshold), service.pipeline.crop_mode

    def on_model(self, model):
        threshold, crop = self.model_defaults(model)
        return (gr.update(value=threshold, maximum=max(2.0, round(threshold * 2, 1))),
                gr.update(value=crop), "")

    # verify ----------------------------------------------------------------------------
    def verify(self, path_a, path_b, threshold, crop, policy, model):
        a = _read_upload(path_a, "photo A", self.limit)
        b = _read_upload(path_b, "photo B", self.limit)
        model = model or None
        calibrated, _ = self.model_defaults(model)
        chosen = None if threshold is None or abs(float(threshold) - calibrated) < 5e-4 \
            else float(threshold)
        result = actions.verify(self.state, a, b, model=model, threshold=chosen, crop=crop,
                                fallback_policy=policy)
        fraction = self.state.service(model, crop=crop,
                                      fallback_policy=policy).pipeline.center_fraction
        shown_a = _annotate(_pixels(self.state, a), [result.a], center_fraction=fraction)
        shown_b = _annotate(_pixels(self.state, b), [result.b], center_fraction=fraction)
        from siamface.render import verification_figure

        notes = _face_notes({"A": result.a, "B": result.b}, policy)
        return (shown_a, shown_b, verification_figure(result), _verdict_html(result),
                _distance_html(result), _gender_html(result.a, "A"), _gender_html(result.b, "B"),
                _notes_html(notes), "")

    # analyze ---------------------------------------------------------------------------
    def analyze(self, path, crop, policy, model):
        item = _read_upload(path, "photo", self.limit)
        model = model or None
        faces = actions.analyze(self.state, item, model=model, all_faces=True, crop=crop,
                                fallback_policy=policy)
        fraction = self.state.service(model, crop=crop,
                                      fallback_policy=policy).pipeline.center_fraction
        shown = _annotate(_pixels(self.state, item), faces, center_fraction=fraction,
                          numbered=True)
        rows = []
        for n, face in enumerate(faces, 1):
            rows.append([
                n,
                face.gender.label if face.gender else "",
                round(face.gender.probability, 4) if face.gender else None,
                "detected" if face.detected else ("no face" if not face.has_face
                                                  else (face.fallback or "centre crop")),
                None if face.face_score is None else round(face.face_score, 4),
                "" if face.box is None else ", ".join(f"{v:.0f}" for v in face.box),
            ])
        with_face = sum(f.has_face for f in faces)
        summary = (f"<p><b>{with_face} face(s)</b> in {_esc(item[0])}</p>"
                   + _notes_html(_face_notes({f"face {n}": f for n, f in enumerate(faces, 1)
                                              if not f.detected}, policy)))
        return shown, rows, summary, ""

    # dataset test ------------------------------------------------------------------------
    def dataset(self, zip_path, server_path, n_pairs, samples, model,
                progress=gr.Progress()):  # noqa: B008 - how Gradio injects its tracker
        server_path = (server_path or "").strip()
        if zip_path:
            source = _read_upload(zip_path, "dataset zip", self.limit)[1]
        elif server_path:
            source = server_path  # checked against --allow-path by the action
        else:
            raise ConfigError("no dataset given: upload a zip of images named "
                              "<person>_<n>.jpg, or name a server folder")
        context = contextvars.copy_context()  # Gradio's progress lives in context variables

        def tell(fraction: float, text: str) -> None:
            context.run(progress, fraction, desc=text)

        evaluation, files = actions.dataset_test(
            self.state, source, n_pairs=int(n_pairs), samples=int(samples),
            model=model or None, progress=tell)
        report = self._cache_file("report.html", files["report.html"])
        metrics = evaluation.metrics
        return (_png(files.get("dashboard.png")), _png(files.get("samples.png")),
                _figures_html(metrics), metrics, gr.update(value=str(report), visible=True), "")

    def _cache_file(self, name: str, data: bytes) -> Path:
        """``data`` as a file in Gradio's upload folder, where Gradio serves it without a copy
        and removes it with the uploads (``delete_cache``, and when the server stops)."""
        folder = Path(self.cache or tempfile.gettempdir()) / f"siamface-{uuid.uuid4().hex}"
        folder.mkdir(mode=0o700, parents=True)
        path = folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path

    # identify --------------------------------------------------------------------------
    def identify(self, gallery_path, probe_paths, k, mode, open_set, model):
        gallery = _read_upload(gallery_path, "gallery zip", self.limit)[1]
        probes = [_read_upload(p, "probe image", self.limit) for p in (probe_paths or [])]
        if not probes:
            raise ConfigError("no probe images given: upload at least one")
        threshold = None if open_set in (None, "") or float(open_set) <= 0 else float(open_set)
        found = actions.identify(self.state, gallery, probes, k=int(k), mode=mode,
                                 open_set_threshold=threshold, model=model or None)
        rows = []
        for probe in found["probes"]:
            if not probe["matches"]:
                reason = probe["face"].get("no_face") or "no face"
                rows.append([probe["probe"], None, reason, None, ""])
            for rank, match in enumerate(probe["matches"], 1):
                within = match["distance"] <= found["threshold"]
                rows.append([probe["probe"], rank, match["person"],
                             round(match["distance"], 4), "yes" if within else "no"])
        g = found["gallery"]
        summary = (f"<p>Gallery: <b>{g['persons']}</b> person(s) from {g['images']} image(s) "
                   f"({_esc(g['mode'])} templates); verification threshold "
                   f"{found['threshold']:.3f}.</p>")
        if g["skipped"]:
            first = g["skipped"][0]
            summary += _notes_html([(f"{len(g['skipped'])} gallery image(s) skipped, e.g. "
                                     f"{first['path']}: {first['reason']}")])
        if threshold is not None:
            accepted = sum(bool(p["accepted"]) for p in found["probes"])
            summary += (f"<p>Open set: {accepted} of {len(found['probes'])} probe(s) within "
                        f"{threshold:.3f} of their best match.</p>")
        return rows, summary, ""

    # models ----------------------------------------------------------------------------
    def models_rows(self) -> list[list]:
        rows = []
        for m in self.state.models():
            if "error" in m:
                rows.append([m["name"], "", None, "", "", "", "", m["error"]])
                continue
            calibration = ", ".join(f"{k}={v}" for k, v in m["calibration"].items()
                                    if not isinstance(v, (dict, list)))
            data = m["training"]["data"]
            trained_on = ", ".join(f"{k} {v}" for k, v in data.items()) or "—"
            metrics = m["metrics"]
            shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                              for k, v in metrics.items()
                              if k in ("val_accuracy", "val_gender_accuracy",
                                       "val_female_f1", "val_threshold"))
            rows.append([m["name"] + (" (default)" if m["default"] else ""), m["backbone"],
                         round(m["threshold"], 4), m["threshold_source"], calibration or "—",
                         trained_on, shown or "—", ""])
        return rows

    def upload_model(self, path):
        name, data = _read_upload(path, "checkpoint", self.limit)
        added = actions.add_model(self.state, name, data)
        names = self.model_names()
        message = (f'<p>Added model <b>{_esc(added["name"])}</b> ({_esc(added["backbone"])}, '
                   f'threshold {added["threshold"]:.3f}, {_esc(added["threshold_source"])}).</p>')
        return (self.models_rows(), self.state.models(), gr.update(choices=names), message)


def _figures_html(metrics: dict) -> str:
    v = metrics.get("verification") or {}
    d = metrics.get("data") or {}
    t = metrics.get("threshold") or {}

    def pct(x):
        return "—" if x is None else f"{100 * x:.1f}%"

    def num(x):
        return "—" if x is None else f"{x:.3f}"

    rows = [
        ("images / persons", f"{d.get('images')} / {d.get('persons')}"),
        ("pairs (genuine / impostor)",
         f"{d.get('pairs')} ({d.get('genuine')} / {d.get('impostor')})"),
        ("threshold", f"{num(t.get('value'))} ({t.get('source')})"),
        ("accuracy", pct(v.get("accuracy"))),
        ("balanced accuracy", pct(v.get("balanced_accuracy"))),
        ("false match rate", pct(v.get("fmr"))),
        ("false non-match rate", pct(v.get("fnmr"))),
        ("AUC", num(v.get("auc"))),
        ("EER", pct(v.get("eer"))),
        ("pairs without a verdict", v.get("no_verdict_pairs")),
        ("images without a face", d.get("images_without_face")),
    ]
    gender = metrics.get("gender")
    if isinstance(gender, dict) and gender.get("accuracy") is not None:
        rows.append(("gender accuracy", pct(gender.get("accuracy"))))
    body = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(val)}</td></tr>" for k, val in rows)
    return f'<table class="siamface-figures">{body}</table>'


# -- the page --------------------------------------------------------------------------------


def _example_pairs() -> list[list[str]]:
    have = set(examples.names())
    pairs = [("kofi_annan_1", "kofi_annan_2"), ("kofi_annan_1", "serena_williams_1"),
             ("serena_williams_1", "astronaut")]
    return [[str(examples.path(a)), str(examples.path(b))] for a, b in pairs
            if a in have and b in have]


def build_ui(state) -> gr.Blocks:
    """The Gradio Blocks of the web app for ``state`` (an
    :class:`~siamface.web.state.AppState`). Mount it with :func:`mount_ui` (or
    ``gradio.mount_gradio_app(app, build_ui(state), path="/", **mount_options(state))``)."""
    ui = _UI(state)
    names = ui.model_names()
    threshold, default_crop = ui.model_defaults(None)
    private = {"api_visibility": "private"}

    with gr.Blocks(title="siamface", delete_cache=CACHE_DELETE, analytics_enabled=False) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown("## siamface: face verification and gender\n"
                        "Uploaded photos are deleted from the server within two minutes; "
                        "nothing is sent to any other host.", elem_id="intro")
            model = gr.Dropdown(names, value=state.default_model, label="Model",
                                info=MODEL_HELP, elem_id="model", interactive=True, scale=0,
                                min_width=280)

        with gr.Tab("Verify", id="verify"):
            with gr.Row():
                with gr.Column(scale=3):
                    with gr.Row():
                        image_a = gr.Image(label="Photo A", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard", "webcam"],
                                           elem_id="photo-a", height=300)
                        image_b = gr.Image(label="Photo B", type="filepath", image_mode=None,
                                           sources=["upload", "clipboard", "webcam"],
                                           elem_id="photo-b", height=300)
                    verify_button = gr.Button("Verify", variant="primary",
                                              elem_id="verify-button")
                    slider = gr.Slider(0.0, max(2.0, round(threshold * 2, 1)), value=threshold,
                                       step=0.001, precision=3, label="Threshold",
                                       info="MATCH when the distance is at most this; preset "
                                       "to the model's calibrated value", elem_id="threshold",
                                       buttons=["reset"])
                    with gr.Row():
                        crop = gr.Radio(CROP_CHOICES, value=default_crop, label="Crop mode",
                                        info=CROP_HELP, elem_id="crop")
                        policy = gr.Radio(FALLBACK_CHOICES, value="auto",
                                          label="When no face is detected", info=FALLBACK_HELP,
                                          elem_id="fallback")
                with gr.Column(scale=2):
                    verify_message = gr.HTML(elem_id="verify-message")
                    verdict = gr.HTML(elem_id="verdict")
                    distance = gr.HTML(elem_id="distance")
                    with gr.Row():
                        gender_a = gr.HTML(elem_id="gender-a")
                        gender_b = gr.HTML(elem_id="gender-b")
                    note = gr.HTML(elem_id="verify-note")
                    figure = gr.Image(label="Both crops", show_label=False, interactive=False,
                                      elem_id="verify-figure", format="png",
                                      buttons=["download", "fullscreen"])
            gr.Examples(_example_pairs(), inputs=[image_a, image_b], label="Example photos",
                        elem_id="verify-examples", api_visibility="private")
            with gr.Row():
                shown_a = gr.Image(label="A: the face used", interactive=False,
                                   elem_id="face-a", format="png",
                                   buttons=["download", "fullscreen"])
                shown_b = gr.Image(label="B: the face used", interactive=False,
                                   elem_id="face-b", format="png",
                                   buttons=["download", "fullscreen"])
            outputs = [shown_a, shown_b, figure, verdict, distance, gender_a, gender_b, note,
                       verify_message]
            verify_button.click(
                _guard(ui.verify, outputs, verify_message,
                       clear=[shown_a, shown_b, figure, verdict, distance, gender_a, gender_b,
                              note]),
                inputs=[image_a, image_b, slider, crop, policy, model], outputs=outputs,
                **private)

        with gr.Tab("Analyze", id="analyze"):
            with gr.Row():
                photo = gr.Image(label="Photo", type="filepath", image_mode=None,
                                 sources=["upload", "clipboard", "webcam"],
                                 elem_id="analyze-photo", height=360)
                analyzed = gr.Image(label="Every face", interactive=False, format="png",
                                    elem_id="analyze-result", height=360,
                                    buttons=["download", "fullscreen"])
            with gr.Row():
                analyze_crop = gr.Radio(CROP_CHOICES[:2], value="aligned"
                                        if default_crop == "center" else default_crop,
                                        label="Crop mode", elem_id="analyze-crop")
                analyze_policy = gr.Radio(FALLBACK_CHOICES, value="auto",
                                          label="When no face is detected", info=FALLBACK_HELP,
                                          elem_id="analyze-fallback")
            analyze_button = gr.Button("Analyze", variant="primary", elem_id="analyze-button")
            gr.Examples([[str(examples.path(n))] for n in examples.names()], inputs=[photo],
                        label="Example photos", api_visibility="private")
            analyze_message = gr.HTML(elem_id="analyze-message")
            analyze_summary = gr.HTML(elem_id="analyze-summary")
            faces_table = gr.Dataframe(
                headers=["face", "gender", "probability", "found by", "face score", "box"],
                datatype=["number", "str", "number", "str", "number", "str"],
                interactive=False, elem_id="analyze-faces", label="Faces")
            outputs = [analyzed, faces_table, analyze_summary, analyze_message]
            analyze_button.click(
                _guard(ui.analyze, outputs, analyze_message,
                       clear=[analyzed, faces_table, analyze_summary]),
                inputs=[photo, analyze_crop, analyze_policy, model], outputs=outputs,
                **private)

        with gr.Tab("Dataset test", id="dataset"):
            gr.Markdown("A zip of face photos named `<person>_<n>.jpg` (the person id is the "
                        "name up to the first `_` or `-`): pairs are drawn from it, scored, "
                        "and summed up in a dashboard and an HTML report.")
            with gr.Row():
                dataset_zip = gr.File(label="Dataset zip", file_types=[".zip"],
                                      type="filepath", elem_id="dataset-zip")
                with gr.Column():
                    allowed = state.config.allow_paths
                    server_path = gr.Textbox(
                        label="…or a folder (or .zip) on the server",
                        placeholder=str(allowed[0]) if allowed else "",
                        info=("under " + ", ".join(str(p) for p in allowed)) if allowed
                        else "disabled: start siamface serve with --allow-path DIR",
                        interactive=bool(allowed), elem_id="dataset-path")
                    n_pairs = gr.Slider(2, 5000, value=200, step=1, label="Pairs",
                                        elem_id="dataset-pairs")
                    n_samples = gr.Slider(0, 32, value=8, step=1, label="Samples shown",
                                          elem_id="dataset-samples-count")
            dataset_button = gr.Button("Run the dataset test", variant="primary",
                                       elem_id="dataset-button")
            dataset_message = gr.HTML(elem_id="dataset-message")
            with gr.Row():
                figures = gr.HTML(elem_id="dataset-figures")
                report = gr.DownloadButton("Download report.html", visible=False,
                                           elem_id="dataset-report")
            dashboard = gr.Image(label="Dashboard", interactive=False, format="png",
                                 elem_id="dataset-dashboard", buttons=["download", "fullscreen"])
            samples_image = gr.Image(label="Samples", interactive=False, format="png",
                                     elem_id="dataset-samples",
                                     buttons=["download", "fullscreen"])
            with gr.Accordion("All figures (metrics.json)", open=False):
                metrics_json = gr.JSON(elem_id="dataset-metrics")
            ui.cache = Path(report.GRADIO_CACHE)
            outputs = [dashboard, samples_image, figures, metrics_json, report, dataset_message]
            dataset_button.click(
                _guard(ui.dataset, outputs, dataset_message,
                       clear=[dashboard, samples_image, figures, metrics_json,
                              (report, gr.update(value=None, visible=False))]),
                inputs=[dataset_zip, server_path, n_pairs, n_samples, model], outputs=outputs,
                **private)

        with gr.Tab("Identify", id="identify"):
            gr.Markdown("A gallery zip (person folders `<person>/*.jpg`, or files named "
                        "`<person>_<n>.jpg`) and probe photos: each probe's closest persons.")
            with gr.Row():
                gallery_zip = gr.File(label="Gallery zip", file_types=[".zip"],
                                      type="filepath", elem_id="identify-gallery")
                probe_files = gr.File(label="Probe photos", file_count="multiple",
                                      file_types=["image"], type="filepath",
                                      elem_id="identify-probes")
                with gr.Column():
                    top_k = gr.Slider(1, 20, value=5, step=1, label="Matches per probe",
                                      elem_id="identify-k")
                    mode = gr.Radio([("mean of each person's photos", "mean"),
                                     ("nearest photo of each person", "nearest")],
                                    value="mean", label="Templates", elem_id="identify-mode")
                    open_set = gr.Number(0, label="Open-set threshold (0: closed set)",
                                         minimum=0, step=0.01, elem_id="identify-open-set")
            identify_button = gr.Button("Identify", variant="primary",
                                        elem_id="identify-button")
            identify_message = gr.HTML(elem_id="identify-message")
            identify_summary = gr.HTML(elem_id="identify-summary")
            ranked = gr.Dataframe(
                headers=["probe", "rank", "person", "distance", "within threshold"],
                datatype=["str", "number", "str", "number", "str"], interactive=False,
                elem_id="identify-results", label="Ranked matches")
            outputs = [ranked, identify_summary, identify_message]
            identify_button.click(
                _guard(ui.identify, outputs, identify_message, clear=[ranked, identify_summary]),
                inputs=[gallery_zip, probe_files, top_k, mode, open_set, model],
                outputs=outputs, **private)

        with gr.Tab("Models", id="models"):
            models_table = gr.Dataframe(
                ui.models_rows(),
                headers=["model", "backbone", "threshold", "threshold chosen by",
                         "calibration", "training data", "metrics", "error"],
                interactive=False, wrap=True, elem_id="models-table", label="Checkpoints")
            with gr.Accordion("Every detail", open=False):
                models_json = gr.JSON(state.models(), elem_id="models-json")
            gr.Markdown("Upload a siamface checkpoint (`.safetensors`, made by `siamface train` "
                        "or `siamface calibrate`). Pickles, torch `.pt`/`.pth` and Keras `.h5` "
                        "files are refused: loading them can run code.")
            checkpoint = gr.File(label="Checkpoint", type="filepath", elem_id="model-file")
            upload_button = gr.Button("Add the model", elem_id="model-upload-button")
            upload_message = gr.HTML(elem_id="model-upload-message")
            outputs = [models_table, models_json, model, upload_message]
            upload_button.click(_guard(ui.upload_model, outputs, upload_message, clear=[]),
                                inputs=[checkpoint], outputs=outputs, **private)

        model.change(_guard(ui.on_model, [slider, crop, verify_message], verify_message,
                            clear=[]),
                     inputs=[model], outputs=[slider, crop, verify_message], **private)

    demo.queue(max_size=4 * state.config.queue_size,
               default_concurrency_limit=state.config.queue_size)
    demo.ui = ui  # the handlers, for tests
    _no_external_examples(demo)
    return demo


def _no_external_examples(demo: gr.Blocks) -> None:
    """Gradio documents each component's API with an example file on a public host
    (raw.githubusercontent.com); the page never fetches it, but the served config would
    name another host. The UI's events are private, so no API example is needed."""
    for block in demo.blocks.values():
        payload = getattr(block, "example_payload", None)
        if payload is None:
            continue
        try:
            value = payload()
        except Exception as exc:  # noqa: BLE001 - a component without an example
            log.debug("no API example for %s: %s", type(block).__name__, exc)
            continue
        if "http://" in repr(value) or "https://" in repr(value):
            block.example_payload = lambda: None
            block.example_value = lambda: None
