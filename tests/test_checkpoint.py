"""Self-describing checkpoints: round trip, compact storage, and clear errors."""

from __future__ import annotations

import pathlib

import pytest
import torch
from safetensors.torch import save_file

from _checkpoint_helpers import rewrite_checkpoint
from siamface.backbones import create_backbone
from siamface.checkpoint import load_checkpoint, read_checkpoint_info, save_checkpoint
from siamface.errors import CheckpointError
from siamface.model import HeadConfig, SiameseMultiTask


@pytest.fixture(scope="module")
def trained_model():
    torch.manual_seed(1)
    model = SiameseMultiTask(create_backbone("dlib-resnet"), HeadConfig(projection=True))
    with torch.no_grad():
        model.gender_head[1].weight.normal_()
        model.projection.weight.add_(0.01 * torch.randn_like(model.projection.weight))
        model.backbone.fc.weight.mul_(1.01)  # as if stage 2 fine-tuned the top group
    return model.eval()


def test_round_trip_heads_and_groups(tmp_path, trained_model):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, trained_model, threshold=0.55, threshold_source="youden",
                    gender_trained=True, stored_groups=["fc"],
                    preprocessing={"crop": "aligned", "select": "central"},
                    training={"seed": 3}, metrics={"val_accuracy": 0.99})
    model, info = load_checkpoint(path)
    assert info.threshold == 0.55 and info.gender_trained and info.stored_groups == ["fc"]
    assert info.preprocessing["select"] == "central" and info.metrics["val_accuracy"] == 0.99
    x = torch.randn(2, 3, 150, 150) * 0.3
    with torch.no_grad():
        expected = trained_model.forward_single(x)
        got = model.forward_single(x)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e)


def test_heads_only_checkpoint_is_small(tmp_path, trained_model):
    path = tmp_path / "heads.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="default",
                    gender_trained=True)
    assert path.stat().st_size < 200_000  # heads only, no backbone tensors
    _, info = load_checkpoint(path)
    assert info.stored_groups == []


def test_other_backbone_is_refused(tmp_path, trained_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=False)
    with pytest.raises(CheckpointError, match="trained for backbone 'dlib-resnet', not 'facenet'"):
        load_checkpoint(path, backbone="facenet")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint_info(tmp_path / "nope.safetensors")


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


class _Payload:
    """Unpickling this object runs ``Path.touch(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _malicious_pickle(path: pathlib.Path, marker: pathlib.Path) -> None:
    torch.save({"weight": torch.zeros(1), "payload": _Payload(marker)}, path)


def test_malicious_pickle_payload_is_live(tmp_path):
    # guard for the test below: a naive (non weights-only) torch.load does run the payload
    path, marker = tmp_path / "evil.pt", tmp_path / "ran"
    _malicious_pickle(path, marker)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "model.safetensors"])
def test_pickle_is_never_loaded(tmp_path, name):
    path, marker = tmp_path / name, tmp_path / "payload-ran"
    _malicious_pickle(path, marker)
    with pytest.raises(CheckpointError, match=r"model\.\w+ is not a readable safetensors file"):
        read_checkpoint_info(path)
    with pytest.raises(CheckpointError, match=r"model\.\w+ is not a readable safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()


def test_foreign_safetensors(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"author": "someone"})
    with pytest.raises(CheckpointError, match="not a siamface checkpoint"):
        load_checkpoint(path)


def test_truncated_file(tmp_path, trained_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True,
                    stored_groups=["fc"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(CheckpointError, match="m.safetensors is not a readable safetensors file"):
        load_checkpoint(path)


def test_future_format_version_is_refused(tmp_path, trained_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True)
    rewrite_checkpoint(path, path, lambda m: m.update(format_version=99))
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path)


def test_description_and_tensors_must_agree(tmp_path, trained_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True)
    rewrite_checkpoint(path, path, lambda m: m["backbone"].update(stored_groups=["fc"]))
    with pytest.raises(CheckpointError, match="does not match its own description"):
        load_checkpoint(path)


def test_weights_hash_mismatch_is_refused(tmp_path, trained_model):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True)
    rewrite_checkpoint(path, path, lambda m: m["backbone"].update(weights_sha256="0" * 64))
    with pytest.raises(CheckpointError, match="installed weights have sha256"):
        load_checkpoint(path)


def test_interrupted_save_leaves_previous_file(tmp_path, trained_model, monkeypatch):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("siamface.checkpoint.save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, trained_model, threshold=0.1, threshold_source="d",
                        gender_trained=True)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize("change, message", [
    (lambda m: m["threshold"].update(value=float("nan")), "threshold nan"),
    (lambda m: m["threshold"].update(value=-1.0), "threshold -1.0"),
    (lambda m: m["gender"].update(trained="false"), "gender.trained must be true or false"),
    (lambda m: m["head"].update(gender_classes="ab"), "gender_classes must be two names"),
    (lambda m: m.setdefault("preprocessing", {}).update(flip_average="yes"),
     "flip_average must be true or false"),
    (lambda m: m.setdefault("preprocessing", {}).update(chip_restore="denoise"),
     "chip_restore must be a list of names"),
    (lambda m: m.setdefault("preprocessing", {}).update(chip_restore=["sharpen"]),
     "unknown chip restoration 'sharpen'"),
    (lambda m: m.setdefault("preprocessing", {}).update(embedding_gates={"restore": "dehaze"}),
     "embedding_gates must be a list"),
    (lambda m: m.setdefault("preprocessing", {}).update(embedding_gates=[
        {"restore": "dehaze", "weight": [1.0, 2.0], "bias": 0.0, "cutoff": 0.5}]),
     "2 values for 128-d embeddings"),
    (lambda m: m.clear() or m.update(format="siamface-checkpoint", format_version=1),
     "malformed checkpoint metadata"),
])
def test_malformed_metadata_values_are_refused(tmp_path, trained_model, change, message):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True)
    rewrite_checkpoint(path, path, change)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_saved_files_get_normal_permissions(tmp_path, trained_model):
    import os

    path = tmp_path / "m.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_version_1_checkpoints_still_load_without_flip(tmp_path, trained_model):
    from siamface.service import load

    path = tmp_path / "v1.safetensors"
    save_checkpoint(path, trained_model, threshold=0.6, threshold_source="d", gender_trained=True,
                    preprocessing={"crop": "aligned"})
    rewrite_checkpoint(path, path, lambda m: m.update(format_version=1))
    _, info = load_checkpoint(path)
    assert info.format_version == 1 and "flip_average" not in info.preprocessing
    assert load(path).flip is False


def test_with_preprocessing_copies_tensors_and_writes_the_current_format(tmp_path,
                                                                         trained_model):
    from siamface.checkpoint import FORMAT_VERSION, with_preprocessing

    source, target = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_checkpoint(source, trained_model, threshold=0.6, threshold_source="d",
                    gender_trained=True)
    rewrite_checkpoint(source, source, lambda m: m.update(format_version=2))
    gate = {"restore": "dehaze", "weight": [0.0] * 128, "bias": 0.0, "cutoff": 1.0}
    info = with_preprocessing(source, target, {"chip_restore": [], "embedding_gates": [gate]})
    assert info.format_version == FORMAT_VERSION
    assert info.preprocessing["embedding_gates"] == [gate]
    a, _ = load_checkpoint(source)
    b, _ = load_checkpoint(target)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name
