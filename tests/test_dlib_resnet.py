"""dlib ResNet: the .dat parser, an unfolded record-by-record reference, and dlib itself."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from siamface.backbones import create_backbone, get_pretrained_config, resolve_weights
from siamface.backbones.dlib_dat import parse_dlib_dat, parse_dlib_dat_bytes
from siamface.backbones.dlib_resnet import DlibResNet, _add_padded, load_dlib_state_dict
from siamface.errors import CheckpointError, WeightsHashError

CFG = get_pretrained_config("dlib-resnet")


@pytest.fixture(scope="module")
def dat_path() -> Path:
    return resolve_weights(CFG)


@pytest.fixture(scope="module")
def network(dat_path):
    return parse_dlib_dat(dat_path)


@pytest.fixture(scope="module")
def model() -> DlibResNet:
    return create_backbone("dlib-resnet")


def test_parser_consumes_whole_file(network, dat_path):
    assert network.num_bytes == os.path.getsize(dat_path) == 22_466_066
    assert network.num_floats == 5_614_592
    assert len(network.layers) == 108
    assert len(network.wrapper_versions) == 130
    assert network.wrapper_versions.count(1) == 22  # tag / skip wrappers
    assert network.wrapper_versions[-1] == 3
    assert network.loss["margin"] == pytest.approx(0.04)
    assert network.loss["distance_threshold"] == pytest.approx(0.6)
    assert network.input["mean"] == pytest.approx((122.782, 117.001, 104.298))
    assert (network.input["nr"], network.input["nc"]) == (150, 150)
    kinds = [layer.kind for layer in network.layers]
    assert kinds.count("con_4") == 29 and kinds.count("affine_") == 29
    assert kinds[:4] == ["con_4", "affine_", "relu_", "max_pool_2"]
    assert kinds[-2:] == ["avg_pool_2", "fc_2"]


def test_state_dict_matches_module(model, dat_path):
    state = load_dlib_state_dict(dat_path)
    assert set(state) == set(model.state_dict())
    assert state["fc.weight"].shape == (128, 256)
    assert sum(v.numel() for v in state.values()) == sum(p.numel() for p in model.parameters())
    again = load_dlib_state_dict(dat_path)
    again["fc.weight"].zero_()
    assert state["fc.weight"].abs().sum() > 0  # callers get copies of the cached tensors


def test_add_padded_top_left():
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 1, 4, 4), 10.0)
    out = _add_padded(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert out[0, 0, :3, :3].eq(11).all() and out[0, 0, 3, :].eq(10).all()
    assert out[0, 1, :3, :3].eq(1).all() and out[0, 1, 3, :].eq(0).all()


def _reference_forward(network, x: torch.Tensor) -> torch.Tensor:
    """Slow interpreter of the raw records with unfolded affines, following the wiring of
    dnn_face_recognition_ex.cpp (tag1 at each block input; a downsampling block's shortcut is
    the avg_pool record that follows the branch)."""
    layers = network.layers
    i = 0

    def conv(t, rec):
        f = rec.fields
        return F.conv2d(t, torch.from_numpy(rec.tensors["weight"]),
                        torch.from_numpy(rec.tensors["bias"]), (f["stride_y"], f["stride_x"]),
                        (f["padding_y"], f["padding_x"]))

    def affine(t, rec):
        g = torch.from_numpy(rec.tensors["gamma"]).view(1, -1, 1, 1)
        return t * g + torch.from_numpy(rec.tensors["beta"]).view(1, -1, 1, 1)

    x = F.max_pool2d(torch.relu(affine(conv(x, layers[0]), layers[1])), 3, 2)
    i = 4
    block_input = x
    while layers[i].kind == "con_4":
        y = torch.relu(affine(conv(block_input, layers[i]), layers[i + 1]))
        y = affine(conv(y, layers[i + 3]), layers[i + 4])
        i += 5
        shortcut = block_input
        if layers[i].kind == "avg_pool_2":
            shortcut = F.avg_pool2d(block_input, 2, 2)
            i += 1
        assert layers[i].kind == "add_prev_" and layers[i + 1].kind == "relu_"
        c, h, w = (max(y.shape[d], shortcut.shape[d]) for d in (1, 2, 3))
        total = torch.zeros(y.shape[0], c, h, w)
        total[:, :y.shape[1], :y.shape[2], :y.shape[3]] += y
        total[:, :shortcut.shape[1], :shortcut.shape[2], :shortcut.shape[3]] += shortcut
        block_input = torch.relu(total)
        i += 2
    assert layers[i].kind == "avg_pool_2" and layers[i].fields["nr"] == 0
    pooled = block_input.mean(dim=(2, 3))
    return pooled @ torch.from_numpy(layers[i + 1].tensors["weight"])


def test_folded_model_matches_unfolded_reference(model, network):
    g = torch.Generator().manual_seed(0)
    chips = torch.randint(0, 256, (3, 150, 150, 3), generator=g, dtype=torch.uint8)
    x = model.preprocess(chips)
    with torch.no_grad():
        ours = model(x)
        ref = _reference_forward(network, x)
    assert ours.shape == (3, 128)
    assert (ours - ref).abs().max() < 1e-5
    norms = ours.norm(dim=1)  # raw descriptors, not L2-normalised
    assert ((norms > 0.5) & (norms < 3)).all() and not torch.allclose(norms, torch.ones(3))


def test_channels_last_same_answer(model):
    x = model.preprocess(np.full((2, 150, 150, 3), 90, np.uint8))
    with torch.no_grad():
        a = model(x)
        cl = create_backbone("dlib-resnet").to(memory_format=torch.channels_last)
        b = cl(x.contiguous(memory_format=torch.channels_last))
    assert (a - b).abs().max() < 1e-5


# --- malformed files --------------------------------------------------------------------

def test_truncated_file_is_a_checkpoint_error(dat_path, tmp_path):
    data = dat_path.read_bytes()
    for cut in (3, 200, len(data) // 2, len(data) - 1):
        with pytest.raises(CheckpointError, match="truncated|not a valid dlib"):
            parse_dlib_dat_bytes(data[:cut], "cut.dat")
    bad = tmp_path / "cut.dat"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="cut.dat"):
        create_backbone("dlib-resnet", weights=bad)


def test_corrupt_and_foreign_bytes(dat_path):
    data = bytearray(dat_path.read_bytes())
    with pytest.raises(CheckpointError, match="loss_metric_2"):
        parse_dlib_dat_bytes(bytes([1, 1, 1, 4]) + b"nope" + bytes(data[16:]))
    corrupt = bytearray(data)
    corrupt[-6] = 0x7F  # a control byte of the last trailer tensor: impossible value
    with pytest.raises(CheckpointError,
                       match="not a valid dlib network file: bad integer control byte 0x7f"):
        parse_dlib_dat_bytes(bytes(corrupt))
    with pytest.raises(CheckpointError, match="unexpected bytes"):
        parse_dlib_dat_bytes(bytes(data) + b"\x00")
    with pytest.raises(CheckpointError, match=r"<bytes>: not a valid dlib network file: "
                       r"truncated \(wanted 1 more bytes\) at byte 0 of 0"):
        parse_dlib_dat_bytes(b"")


def test_wrong_sha256_refused(dat_path, tmp_path, monkeypatch):
    wrong = dataclasses.replace(CFG, sha256="0" * 64)
    with pytest.raises(WeightsHashError, match="0" * 64):
        resolve_weights(wrong)
    # a modified copy in the cache position of a URL-sourced config is refused too
    copy = tmp_path / CFG.filename
    copy.write_bytes(dat_path.read_bytes()[:-1] + b"\x01")
    cached = dataclasses.replace(CFG, package=None, package_path=None, url="https://x/y.dat")
    with pytest.raises(WeightsHashError, match=CFG.sha256):
        resolve_weights(cached, cache_dir=tmp_path)


def test_state_dict_round_trip(model, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "dlib.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    other = create_backbone("dlib-resnet", pretrained=False, weights=path)
    x = model.preprocess(np.full((1, 150, 150, 3), 128, np.uint8))
    with torch.no_grad():
        assert torch.equal(model(x), other(x))


# --- against dlib itself ----------------------------------------------------------------

@pytest.mark.dlib
@pytest.mark.lfw
def test_matches_dlib_on_lfw_faces(lfw_dir, model):
    dlib = pytest.importorskip("dlib")
    frm = pytest.importorskip("face_recognition_models")
    from PIL import Image

    models = Path(frm.__file__).parent / "models"
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    reference = dlib.face_recognition_model_v1(str(models / CFG.filename))
    chips = []
    for name in sorted(os.listdir(lfw_dir / "images")):
        image = np.asarray(Image.open(lfw_dir / "images" / name / f"{name}_0001.jpg")
                           .convert("RGB"))
        dets = detector(image, 1)
        if dets:
            shape = predictor(image, dets[0])
            chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        if len(chips) == 50:
            break
    assert len(chips) == 50
    expected = np.array([np.asarray(v) for v in reference.compute_face_descriptor(chips)])
    ours = model.embed(np.stack(chips)).numpy()
    assert ours.shape == expected.shape == (50, 128)
    assert np.abs(ours - expected).max() < 1e-5
    assert np.linalg.norm(ours, axis=1).mean() == pytest.approx(
        np.linalg.norm(expected, axis=1).mean(), abs=1e-5)
