"""Tests of ``siamface export --format onnx`` (siamface.export): the graphs pass onnx.checker,
the manifest describes the checkpoint, the fp32 model matches PyTorch on 100 real LFW chips
(embeddings and gender logits within 1e-4, flip average inside the graph) and the exported
MTCNN matches the torch detector on 100 LFW images (boxes within 1 px); bad input fails with
a message saying which and why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _checkpoint_helpers import rewrite_checkpoint
from _onnx_helpers import require_onnx, shipped_export

require_onnx()

import onnx

from siamface.errors import CheckpointError, ConfigError
from siamface.export import MANIFEST_NAME, export_onnx, read_manifest
from siamface.export.manifest import file_sha256
from siamface.ort import OnnxFacePresence, OnnxMTCNN, session
from siamface.service import default_model_path

N_LFW = 100


@pytest.fixture(scope="module")
def export_dir() -> Path:
    return shipped_export()


@pytest.fixture(scope="module")
def torch_service():
    import siamface

    return siamface.load()


@pytest.fixture(scope="module")
def lfw_paths(lfw_dir) -> list[Path]:
    """100 LFW images spread over the whole alphabet of names."""
    files = sorted((lfw_dir / "images").glob("*/*.jpg"))
    step = max(1, len(files) // N_LFW)
    return files[::step][:N_LFW]


@pytest.fixture(scope="module")
def lfw_chips(lfw_paths) -> np.ndarray:
    from siamface.faces import FacePipeline

    crops = FacePipeline(crop="aligned").crop_batch(lfw_paths)
    chips = np.stack([c.chip for c in crops if c.detected])
    assert len(chips) >= 95  # LFW: MTCNN finds nearly every face
    return chips


def _nets(folder: Path) -> dict[str, object]:
    return {name: session(folder / f"{name}.onnx") for name in ("pnet", "rnet", "onet")}


def test_export_writes_checked_graphs_and_manifest(export_dir, torch_service):
    manifest = read_manifest(export_dir)
    ckpt = default_model_path()
    assert manifest["checkpoint"]["sha256"] == file_sha256(ckpt)
    assert manifest["checkpoint"]["description"] == torch_service.info.to_json()
    assert manifest["model_id"] == torch_service.model_id
    spec = manifest["model"]
    assert spec["backbone"] == "dlib-resnet" and spec["chip_size"] == 150
    assert spec["template"] == "dlib-150" and spec["embedding_dim"] == 128
    assert spec["flip_average"] is True  # the shipped model's preprocessing says so
    assert spec["threshold"] == pytest.approx(torch_service.threshold)
    assert spec["gender_classes"] == ["male", "female"]
    assert manifest["opset"] == 17
    assert set(manifest["files"]) == {"model", "pnet", "rnet", "onet"}
    for entry in manifest["files"].values():
        path = export_dir / entry["file"]
        assert file_sha256(path) == entry["sha256"]
        onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(export_dir / "model.onnx")).graph
    (chips,) = graph.input
    dims = chips.type.tensor_type.shape.dim
    assert chips.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [150, 150, 3]  # dynamic N
    assert [o.name for o in graph.output] == ["embedding", "gender_logit"]


@pytest.mark.lfw
def test_fp32_model_matches_torch_on_lfw_chips(export_dir, torch_service, lfw_chips):
    """Preprocessing and flip average inside the graph: the service's outputs within 1e-4,
    in batches of 32 and of the remainder (the batch axis is dynamic)."""
    want_emb, want_logit = torch_service._run_chips(lfw_chips)
    sess = session(export_dir / "model.onnx")
    got = [sess.run(None, {"chips": lfw_chips[i:i + 32]}) for i in range(0, len(lfw_chips), 32)]
    got_emb = np.concatenate([g[0] for g in got])
    got_logit = np.concatenate([g[1] for g in got])
    assert got_emb.shape == want_emb.shape and got_logit.shape == want_logit.shape
    assert np.abs(got_emb - want_emb).max() < 1e-4
    assert np.abs(got_logit - want_logit).max() < 1e-4
    # the flip average is really in the graph: a no-flip torch pass differs by far more
    import siamface

    plain_emb, _ = siamface.load(flip=False)._run_chips(lfw_chips[:8])
    assert np.abs(plain_emb - want_emb[:8]).max() > 1e-2


@pytest.mark.lfw
def test_no_flip_export_matches_torch_without_flip(lfw_chips):
    import siamface

    folder = shipped_export(flip=False, with_detector=False)
    manifest = read_manifest(folder)
    assert manifest["model"]["flip_average"] is False and "pnet" not in manifest["files"]
    want_emb, want_logit = siamface.load(flip=False)._run_chips(lfw_chips[:40])
    got_emb, got_logit = session(folder / "model.onnx").run(None, {"chips": lfw_chips[:40]})
    assert np.abs(got_emb - want_emb).max() < 1e-4
    assert np.abs(got_logit - want_logit).max() < 1e-4


@pytest.mark.lfw
def test_exported_mtcnn_matches_torch_on_lfw_images(export_dir, lfw_paths):
    from siamface.detect import MTCNN
    from siamface.io import load_image

    images = [load_image(p) for p in lfw_paths]
    torch_found = MTCNN().detect_batch(images)
    onnx_found = OnnxMTCNN(**_nets(export_dir)).detect_batch(images)
    faces = 0
    for path, want, got in zip(lfw_paths, torch_found, onnx_found, strict=True):
        assert len(got) == len(want), path.name
        faces += len(got)
        if len(got):
            assert np.abs(got.boxes - want.boxes).max() < 1.0, path.name
            assert np.abs(got.landmarks - want.landmarks).max() < 1.0, path.name
            assert np.abs(got.scores - want.scores).max() < 1e-4, path.name
    assert faces >= N_LFW


@pytest.mark.lfw
def test_exported_presence_check_matches_torch(export_dir, lfw_paths):
    from siamface.detect.presence import FacePresence
    from siamface.io import load_image

    rng = np.random.default_rng(3)
    images = [load_image(p) for p in lfw_paths[:12]]
    images += [rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), np.zeros((9, 9, 3), np.uint8)]
    nets = _nets(export_dir)
    got = OnnxFacePresence(nets["rnet"], nets["onet"], nets["pnet"]).score_many(images)
    want = FacePresence().score_many(images)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_backbone_without_onnx_path_is_refused(tmp_path):
    ckpt = rewrite_checkpoint(default_model_path(), tmp_path / "facenet.safetensors",
                              lambda m: m["backbone"].update(name="facenet"))
    with pytest.raises(CheckpointError, match="backbone 'facenet' has no ONNX export path"):
        export_onnx(tmp_path / "out", ckpt)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_int8_needs_calibration(tmp_path):
    with pytest.raises(ConfigError, match="calibrat"):
        export_onnx(tmp_path / "out", int8=True)


def test_reexport_replaces_the_folder_contents(tmp_path, export_dir):
    """Exporting without the detector into a folder that held one removes its old files:
    the manifest never names a file of an older export."""
    import shutil

    folder = tmp_path / "again"
    shutil.copytree(export_dir, folder)
    result = export_onnx(folder, with_detector=False)
    assert sorted(p.name for p in folder.iterdir()) == [MANIFEST_NAME, "model.onnx"]
    assert json.loads((folder / MANIFEST_NAME).read_text()) == result.manifest


@pytest.mark.lfw
@pytest.mark.slow
def test_int8_export_is_calibrated_on_real_chips_and_stays_close(tmp_path, lfw_chips):
    """Static int8 quantisation calibrated on LFW chips: a checked graph that the onnx-int8
    runtime loads; its embeddings stay within a few percent of fp32 and the genders agree.
    (LFW View 2 accuracy: README, measured with siamface evaluate --runtime onnx-int8.)"""
    import shutil

    import siamface

    folder = tmp_path / "int8"
    shutil.copytree(shipped_export(), folder)
    result = export_onnx(folder, with_detector=True, int8=True, calibration=lfw_chips[:64])
    entry = result.manifest["files"]["model_int8"]
    assert entry["calibration_chips"] == 64 and entry["calibration_method"] == "percentile"
    onnx.checker.check_model(str(folder / entry["file"]), full_check=True)
    service = siamface.load(runtime="onnx-int8", onnx_dir=folder)
    assert service.model_id.endswith(entry["sha256"][:16])
    q_emb, q_logit = service._run_chips(lfw_chips[64:])
    f_emb, f_logit = session(folder / "model.onnx").run(None, {"chips": lfw_chips[64:]})
    relative = np.linalg.norm(q_emb - f_emb, axis=1) / np.linalg.norm(f_emb, axis=1)
    assert np.median(relative) < 0.15
    assert ((q_logit > 0) == (f_logit > 0)).mean() >= 0.95
