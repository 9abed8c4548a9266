"""The web UI without a browser: the page and config it serves name no other host (no font
or stylesheet from a CDN, no analytics), its privacy settings, and its handlers on the
shipped example photos, with errors turned into messages. The browser drives it in
test_web_browser.py."""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio")
pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient

from siamface import examples
from siamface.errors import CheckpointError, ConfigError, SiamfaceError
from siamface.web import ui as web_ui
from siamface.web.app import create_app
from siamface.web.state import AppState, Busy, ServeConfig

URL = re.compile(r"""(?:https?|wss?):(?://|\\/\\/)[^\s"'<>)\\]+""")


@pytest.fixture(scope="module")
def state():
    state = AppState(ServeConfig())
    yield state
    state.close()


@pytest.fixture(scope="module")
def blocks(state, tmp_path_factory):
    """The UI, with Gradio's upload folder (examples, reports) in a temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        yield web_ui.build_ui(state)


def foreign(urls, host="testserver"):
    return sorted({u for u in urls if not re.match(rf"(?:https?|wss?)://{host}(?:[:/]|$)", u)})


def test_ui_config_names_no_other_host(blocks):
    import json

    config = json.dumps(blocks.get_config_file(), default=repr)
    assert foreign(URL.findall(config)) == []
    assert "googleapis" not in config and "gstatic" not in config
    assert blocks.delete_cache == web_ui.CACHE_DELETE == (60, 60)
    assert blocks.analytics_enabled is False


def test_theme_uses_system_fonts_only():
    theme = web_ui.theme()
    css = theme._get_theme_css() if hasattr(theme, "_get_theme_css") else ""
    assert "googleapis" not in css and "@import" not in css
    names = [getattr(f, "name", str(f)) for f in theme._font + theme._font_mono]
    assert "system-ui" in names and "monospace" in names
    assert not any(type(f).__name__ == "GoogleFont" for f in theme._font + theme._font_mono)


def test_served_page_loads_nothing_from_another_host(state, tmp_path):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
        app = create_app(state=state)
    assert app.state.ui_mounted
    with TestClient(app) as client:  # the lifespan runs: Gradio's cache cleaner too
        page = client.get("/")
        assert page.status_code == 200
        text = page.text
        assert "googleapis" not in text and "gstatic" not in text
        loads = re.findall(r"""<(?:link|script|img|iframe)\b[^>]*\b(?:href|src)=["']([^"']+)""",
                           text)
        assert loads and foreign(u for u in loads if "://" in u) == [], loads
        stylesheets = re.findall(
            r"""<link\b[^>]*rel=["']stylesheet["'][^>]*href=["']([^"']+)""", text)
        config = client.get("/config")
        assert config.status_code == 200
        settings = config.json()
        assert settings["stylesheets"] == [] and settings["analytics_enabled"] is False
        assert settings["max_file_size"] == state.config.max_request_bytes
        assert foreign(URL.findall(config.text)) == []
        assert settings.get("pwa") in (False, None) and settings.get("mcp_server") in (False, None)
        for sheet in ["/theme.css"] + [s.removeprefix(".") for s in stylesheets]:
            css = client.get(sheet)
            assert css.status_code == 200, sheet
            assert "@import" not in css.text and "googleapis" not in css.text, sheet
            assert foreign(re.findall(r"url\(\s*[\"']?((?:https?:)?//[^)\"']+)", css.text)) \
                == [], sheet


def _verify(ui, a, b, *, policy="auto", crop="aligned", threshold=None):
    threshold = ui.model_defaults(None)[0] if threshold is None else threshold
    return ui.verify(str(a), str(b), threshold, crop, policy, "default")


def test_verify_handler_on_the_example_photos(blocks):
    ui = blocks.ui
    kofi_1, kofi_2 = examples.path("kofi_annan_1"), examples.path("kofi_annan_2")
    shown_a, shown_b, figure, verdict, distance, gender_a, gender_b, note, message = \
        _verify(ui, kofi_1, kofi_2)
    assert ">MATCH<" in verdict and "≤ threshold" in distance and "youden" in distance
    assert "<b>male " in gender_a and "<b>male " in gender_b
    assert note == "" and message == ""
    assert shown_a.ndim == 3 and max(shown_a.shape[:2]) <= web_ui.DISPLAY_SIDE
    assert figure.shape[2] == 3 and shown_b.dtype == np.uint8
    out = _verify(ui, kofi_1, examples.path("serena_williams_1"))
    assert ">NO MATCH<" in out[3] and "> threshold" in out[4]
    assert "<b>female " in out[6]
    strict = _verify(ui, kofi_1, kofi_2, threshold=0.05)  # a threshold the user set
    assert ">NO MATCH<" in strict[3] and "set by you" in strict[4]


def test_verify_without_a_face_says_so(blocks, tmp_path):
    noise = tmp_path / "noise.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(noise)
    out = _verify(blocks.ui, examples.path("kofi_annan_1"), noise, policy="never")
    assert ">NO FACE in B<" in out[3] and "no verdict" in out[4]
    assert "No face in B" in out[7] and "no face" in out[6]
    fallback = _verify(blocks.ui, examples.path("kofi_annan_1"), noise, policy="always")
    assert "No face was detected in B" in fallback[7] and "centre crop" in fallback[7]
    assert "MATCH" in fallback[3]  # always: the centre crop is used, there is a verdict


def test_analyze_handler_boxes_every_face(blocks):
    shown, rows, summary, message = blocks.ui.analyze(
        str(examples.path("serena_williams_1")), "aligned", "auto", "default")
    assert message == "" and "1 face(s)" in summary
    assert rows[0][1] == "female" and 0.5 <= rows[0][2] <= 1 and rows[0][3] == "detected"
    assert shown.ndim == 3


def test_dataset_handler_gives_dashboard_and_report(blocks, tmp_path):
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as zf:
        for name in examples.names():
            zf.write(examples.path(name), f"{name.replace('_annan', '')}.jpg")
    archive = tmp_path / "photos.zip"
    archive.write_bytes(data.getvalue())
    ui = blocks.ui
    dashboard, samples, figures, metrics, report, message = ui.dataset(
        str(archive), "", 6, 2, "default")
    assert message == "" and dashboard.size[0] > 600 and samples is not None
    assert "images / persons" in figures and metrics["data"]["images"] == 4
    path = Path(report["value"])  # in Gradio's upload folder: deleted with the uploads
    assert path.name == "report.html" and path.read_bytes().startswith(b"<!")
    assert path.parent.parent == ui.cache and oct(path.stat().st_mode & 0o777) == "0o600"


def test_identify_handler_ranks_the_gallery(blocks, tmp_path):
    gallery = tmp_path / "gallery.zip"
    with zipfile.ZipFile(gallery, "w") as zf:
        for name in ("kofi_annan_1", "serena_williams_1", "astronaut"):
            zf.write(examples.path(name), f"{name}.jpg")  # persons kofi, serena, astronaut
    rows, summary, message = blocks.ui.identify(
        str(gallery), [str(examples.path("kofi_annan_2"))], 3, "mean", 0, "default")
    assert message == "" and "<b>3</b> person(s)" in summary
    assert [r[1] for r in rows] == [1, 2, 3] and rows[0][0] == "kofi_annan_2.jpg"
    assert rows[0][2] == "kofi" and rows[0][4] == "yes"
    assert rows[0][3] < rows[1][3] <= rows[2][3]
    with pytest.raises(ConfigError, match="no probe images"):
        blocks.ui.identify(str(gallery), [], 3, "mean", 0, "default")


def test_model_upload_adds_a_checkpoint(blocks, state, tmp_path):
    from siamface.service import default_model_path

    upload = tmp_path / "copy-of-default.safetensors"
    upload.write_bytes(default_model_path().read_bytes())
    rows, models, dropdown, message = blocks.ui.upload_model(str(upload))
    assert "Added model <b>copy-of-default</b>" in message
    assert [r[0] for r in rows] == ["default (default)", "copy-of-default"]
    assert dropdown["choices"] == ["default", "copy-of-default"] or \
        [c[0] for c in dropdown["choices"]] == ["default", "copy-of-default"]
    assert models[1]["backbone"] == "dlib-resnet"
    threshold, crop = blocks.ui.model_defaults("copy-of-default")
    assert threshold == pytest.approx(models[1]["threshold"]) and crop == "aligned"


def test_server_path_needs_an_allowed_root(blocks):
    with pytest.raises(SiamfaceError, match="--allow-path"):
        blocks.ui.dataset(None, "/etc", 6, 2, "default")
    with pytest.raises(ConfigError, match="no dataset given"):
        blocks.ui.dataset(None, "", 6, 2, "default")


@pytest.mark.parametrize(("name", "data", "why"), [
    ("model.pt", pickle.dumps({"w": 1}), "pickle"),
    ("model.pth", b"PK\x03\x04" + b"\0" * 64, "pickle"),
    ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "Keras"),
    ("model.safetensors", pickle.dumps({"w": 1}), "pickle"),
])
def test_model_upload_refuses_what_is_not_safetensors(blocks, tmp_path, name, data, why):
    upload = tmp_path / name
    upload.write_bytes(data)
    with pytest.raises(CheckpointError, match=why):
        blocks.ui.upload_model(str(upload))


def test_models_table_shows_the_metadata(blocks):
    rows = blocks.ui.models_rows()
    assert rows[0][0] == "default (default)" and rows[0][1] == "dlib-resnet"
    assert 0 < rows[0][2] < 2 and "youden" in rows[0][3]
    assert "layout lfw" in rows[0][5] and "val_accuracy" in rows[0][6]


def _raises(exc):
    def fn(*_args):
        raise exc
    return fn


@pytest.mark.filterwarnings("ignore::UserWarning")  # gr.Warning outside a request
@pytest.mark.parametrize(("exc", "shown"), [
    (Busy(8, 2), "the server is busy"),
    (ConfigError("threshold must be a finite distance"), "threshold must be a finite"),
    (RuntimeError("secret internals"), "something went wrong on the server (RuntimeError)"),
])
def test_errors_become_messages_not_tracebacks(exc, shown):
    message, kept, cleared = object(), object(), object()
    guarded = web_ui._guard(_raises(exc), [kept, cleared, message], message, clear=[cleared])
    out = guarded()
    assert len(out) == 3 and shown in out[2] and 'class="siamface-error"' in out[2]
    assert "Traceback" not in out[2] and "secret internals" not in out[2]
    assert out[1] is None and isinstance(out[0], dict)  # cleared, and left as it was


def test_a_vanished_upload_asks_for_it_again(tmp_path):
    with pytest.raises(ConfigError, match="upload it again"):
        web_ui._read_upload(str(tmp_path / "gone.jpg"), "photo A", 100)
    with pytest.raises(ConfigError, match="no photo A given"):
        web_ui._read_upload(None, "photo A", 100)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"x" * 101)
    with pytest.raises(ConfigError, match="larger than the limit"):
        web_ui._read_upload(str(big), "photo A", 100)
