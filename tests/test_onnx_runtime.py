"""Tests of the torch-free runtime (siamface.ort, ``--runtime onnx``): ``verify`` in a new
process never imports torch, results agree with the torch service, the export is found in
the cache or ``--onnx-dir``, and an export that is missing, incomplete, changed or made from
another checkpoint is refused with a message saying which and why."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _checkpoint_helpers import rewrite_checkpoint
from _onnx_helpers import copy_export, crop_chips, require_onnx, shipped_export

require_onnx()

import siamface
from siamface.cli.main import main
from siamface.errors import CheckpointError, ConfigError, UnknownNameError
from siamface.export import MANIFEST_NAME, default_export_dir
from siamface.export.manifest import file_sha256, onnx_cache_dir
from siamface.service import default_model_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "src" / "siamface" / "examples"
A, B, C = (str(EXAMPLES / f) for f in ("kofi_annan_1.jpg", "kofi_annan_2.jpg",
                                        "serena_williams_1.jpg"))


@pytest.fixture(scope="module")
def export_dir() -> Path:
    return shipped_export()


@pytest.fixture(scope="module")
def onnx_service(export_dir):
    return siamface.load(runtime="onnx", onnx_dir=export_dir)


@pytest.fixture(scope="module")
def torch_service():
    return siamface.load()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """The user's export cache is never read or written."""
    monkeypatch.setenv("SIAMFACE_CACHE", str(tmp_path / "weights"))


def test_verify_in_a_new_process_never_imports_torch(export_dir):
    code = (
        "import sys\n"
        "from siamface.cli.main import main\n"
        f"rc = main(['verify', '--runtime', 'onnx', '--onnx-dir', {str(export_dir)!r}, "
        f"{A!r}, {B!r}])\n"
        "print('TORCH', sorted(m for m in sys.modules if m.startswith('torch')))\n"
        "print('RC', rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("MATCH"), done.stdout
    assert "TORCH []" in lines and "RC 0" in lines, done.stdout


def test_the_onnx_pipeline_crops_the_same_in_a_worker_process(onnx_service):
    # evaluate / calibrate --workers hand the pipeline, ONNX sessions included, to
    # processes started with spawn: it must pickle, and cut the same chips there.
    here = crop_chips(onnx_service.pipeline, [A, C])
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        there = pool.apply(crop_chips, (onnx_service.pipeline, [A, C]))
    assert len(there) == 2
    assert all(np.array_equal(x, y) for x, y in zip(here, there, strict=True))


def test_results_agree_with_the_torch_service(onnx_service, torch_service):
    for a, b in ((A, B), (A, C)):
        got, want = onnx_service.verify(a, b), torch_service.verify(a, b)
        assert got.status == want.status
        assert got.distance == pytest.approx(want.distance, abs=1e-3)
        assert got.threshold == want.threshold and got.threshold_source == want.threshold_source
        for g, w in ((got.a, want.a), (got.b, want.b)):
            assert np.abs(np.array(g.box) - np.array(w.box)).max() < 1.0
            assert g.gender.label == w.gender.label
            assert g.gender.probability == pytest.approx(w.gender.probability, abs=1e-4)
    faces = onnx_service.analyze(A, all_faces=True)
    assert len(faces) == len(torch_service.analyze(A, all_faces=True)) >= 1
    emb = onnx_service.embed([A, C])
    np.testing.assert_allclose(emb, torch_service.embed([A, C]), atol=1e-3)
    assert onnx_service.embed([]).shape == (0, 128)


def test_no_face_and_fallback_use_the_onnx_presence_check(onnx_service, torch_service):
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (200, 160, 3), dtype=np.uint8)
    got, want = onnx_service.faces([noise])[0], torch_service.faces([noise])[0]
    assert not got.has_face and got.no_face == want.no_face
    assert got.face_score == pytest.approx(want.face_score, abs=1e-5)
    assert type(onnx_service.pipeline.presence).__name__ == "OnnxFacePresence"
    assert type(onnx_service.pipeline.detector).__name__ == "OnnxMTCNN"


def test_service_identity_and_limits(onnx_service, torch_service):
    sha = onnx_service.manifest["files"]["model"]["sha256"]
    assert onnx_service.model_id == f"{torch_service.model_id}:runtime=onnx:{sha[:16]}"
    assert onnx_service.embedding_id == (f"{torch_service.embedding_id}:runtime=onnx:"
                                         f"{sha[:16]}")
    assert onnx_service.gender_available and onnx_service.flip is True
    assert onnx_service.pipeline.params()["detector"]["name"] == "OnnxMTCNN"
    assert "onnx runtime" in onnx_service.describe()
    with pytest.raises(ConfigError, match="holds no torch model"):
        onnx_service.model.backbone  # noqa: B018
    with pytest.raises(ConfigError, match=r"\(N, 150, 150, 3\)"):
        onnx_service._run_chips(np.zeros((2, 112, 112, 3), np.uint8))


def test_the_export_cache_is_where_export_writes_and_load_looks(tmp_path, export_dir):
    from siamface.backbones.weights import weights_cache_dir

    assert onnx_cache_dir() == weights_cache_dir() / "onnx"
    sha = file_sha256(default_model_path())
    target = default_export_dir(sha, True)
    assert target.parent == onnx_cache_dir() and target.name == f"{sha[:16]}-flip1"
    import shutil

    shutil.copytree(export_dir, target)
    service = siamface.load(runtime="onnx")
    assert service.onnx_dir == target


def test_missing_export_says_how_to_create_it():
    with pytest.raises(CheckpointError, match="siamface export --format onnx --with-detector`"):
        siamface.load(runtime="onnx")
    with pytest.raises(CheckpointError, match="--no-flip"):
        siamface.load(runtime="onnx", flip=False)


def test_export_of_another_checkpoint_is_refused(tmp_path, export_dir):
    other = rewrite_checkpoint(default_model_path(), tmp_path / "other.safetensors",
                               lambda m: m["threshold"].update(value=0.5))
    with pytest.raises(CheckpointError, match="does not match") as info:
        siamface.load(other, runtime="onnx", onnx_dir=export_dir)
    assert file_sha256(other) in str(info.value) and "--model" in str(info.value)


def test_manifest_that_disagrees_with_the_checkpoint_is_refused(tmp_path):
    folder = copy_export(tmp_path)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["model"]["threshold"] = 0.1
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="does not match the description.*threshold"):
        siamface.load(runtime="onnx", onnx_dir=folder)


def test_changed_onnx_file_is_refused(tmp_path):
    folder = copy_export(tmp_path)
    data = bytearray((folder / "rnet.onnx").read_bytes())
    data[-10] ^= 0xFF
    (folder / "rnet.onnx").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="rnet.onnx has sha256"):
        siamface.load(runtime="onnx", onnx_dir=folder)


def test_export_without_detector_or_int8_is_refused(tmp_path):
    folder = copy_export(tmp_path)
    with pytest.raises(CheckpointError, match="no int8 model.*--int8"):
        siamface.load(runtime="onnx-int8", onnx_dir=folder)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    del manifest["files"]["pnet"]
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="without the detector.*--with-detector"):
        siamface.load(runtime="onnx", onnx_dir=folder)
    (folder / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable JSON manifest"):
        siamface.load(runtime="onnx", onnx_dir=folder)


def test_flip_device_and_runtime_arguments(export_dir):
    with pytest.raises(CheckpointError, match="flip averaging on"):
        siamface.load(runtime="onnx", onnx_dir=export_dir, flip=False)
    with pytest.raises(ConfigError, match="CPU only"):
        siamface.load(runtime="onnx", onnx_dir=export_dir, device="cuda")
    with pytest.raises(ConfigError, match="needs --runtime torch"):
        siamface.load(backbone="dlib-resnet", runtime="onnx")
    with pytest.raises(UnknownNameError, match="runtime"):
        siamface.load(runtime="tflite")


def test_cli_analyze_and_embed_with_the_onnx_runtime(export_dir, tmp_path, capsys):
    flags = ["--runtime", "onnx", "--onnx-dir", str(export_dir)]
    assert main(["analyze", A, C, "--json", *flags]) == 0
    faces = json.loads(capsys.readouterr().out)["faces"]
    assert [f["gender"]["label"] for f in faces] == ["male", "female"]
    folder = tmp_path / "images"
    folder.mkdir()
    for path in (A, C):
        (folder / Path(path).name).write_bytes(Path(path).read_bytes())
    out = tmp_path / "emb.npz"
    assert main(["embed", str(folder), "--out", str(out), "--no-progress", *flags]) == 0
    with np.load(out) as data:
        assert data["embeddings"].shape == (2, 128)


def test_the_rest_api_serves_the_onnx_runtime(export_dir, onnx_service, tmp_path):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from siamface.web.app import create_app
    from siamface.web.state import AppState, ServeConfig

    models = tmp_path / "models"
    models.mkdir()
    rewrite_checkpoint(default_model_path(), models / "other.safetensors",
                       lambda m: m["threshold"].update(value=0.5))  # no export of its own
    state = AppState(ServeConfig(runtime="onnx", onnx_dir=export_dir, models_dir=models,
                                 ui=False))
    try:
        client = TestClient(create_app(state=state, ui=False))
        files = {"a": ("a.jpg", Path(A).read_bytes(), "image/jpeg"),
                 "b": ("b.jpg", Path(B).read_bytes(), "image/jpeg")}
        reply = client.post("/api/v1/verify", files=files)
        assert reply.status_code == 200, reply.text
        expected = onnx_service.verify(A, B)
        assert reply.json()["is_match"] is True
        assert reply.json()["distance"] == pytest.approx(expected.distance, abs=1e-6)
        centre = client.post("/api/v1/verify", files=files, data={"crop": "center"})
        assert centre.status_code == 200, centre.text
        assert type(state.service(crop="center")).__name__ == "OnnxFaceService"
        assert client.get("/api/v1/version").json()["runtime"] == "onnx"
        missing = client.post("/api/v1/verify", files=files, data={"model": "other"})
        assert missing.status_code == 400, missing.text
        assert missing.json()["code"] == "bad_checkpoint"
        assert "siamface export --format onnx" in missing.json()["message"]
    finally:
        state.close()
