"""Registry, configs, weights resolution/fetching, and the contract every backbone meets."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pathlib

import numpy as np
import pytest
import torch

from siamface.backbones import (
    Backbone,
    create_backbone,
    expected_weights_path,
    fetch_weights,
    get_pretrained_config,
    list_backbones,
    list_weights,
    register_backbone,
    resolve_weights,
    weights_cache_dir,
)
from siamface.backbones import weights as weights_mod
from siamface.errors import (
    CheckpointError,
    ConfigError,
    UnknownNameError,
    WeightsHashError,
    WeightsNotFoundError,
)

ALL = list_backbones()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's real weights cache."""
    monkeypatch.setenv("SIAMFACE_CACHE", str(tmp_path / "weights"))


# --- registry ---------------------------------------------------------------------------

def test_registry_lists_expected_backbones():
    assert {"dlib-resnet", "facenet"} <= set(ALL)
    assert ALL == sorted(ALL)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        create_backbone("resnet9000")
    msg = str(info.value)
    assert "resnet9000" in msg and "dlib-resnet" in msg and "facenet" in msg
    with pytest.raises(UnknownNameError,
                       match=r"unknown backbone 'resnet9000'; valid: .*dlib-resnet"):
        get_pretrained_config("resnet9000")


def test_register_twice_refused():
    cfg = get_pretrained_config("dlib-resnet")
    with pytest.raises(ValueError, match="backbone 'dlib-resnet' is already registered"):
        register_backbone("dlib-resnet", cfg)(lambda c: None)


@pytest.mark.parametrize("name", ALL)
def test_config_is_frozen_and_complete(name):
    cfg = get_pretrained_config(name)
    assert cfg.name == name
    with pytest.raises(dataclasses.FrozenInstanceError, match="input_size"):
        cfg.input_size = 1  # type: ignore[misc]
    assert cfg.distance == "euclidean" and cfg.crop == "aligned"
    assert cfg.license and cfg.origin and cfg.filename
    assert (cfg.package is None) != (cfg.url is None)
    d = cfg.to_dict()
    assert d["name"] == name and isinstance(d["mean"], list)


def test_dlib_and_facenet_configs():
    d = get_pretrained_config("dlib-resnet")
    assert d.input_size == 150 and d.embedding_dim == 128 and not d.normalized
    assert d.mean == (122.782, 117.001, 104.298) and d.scale == 256
    assert d.default_threshold == 0.6 and d.chip_padding == 0.25
    f = get_pretrained_config("facenet")
    assert f.input_size == 160 and f.embedding_dim == 512 and f.normalized
    assert f.mean == (127.5,) * 3 and f.scale == 128
    assert f.weights_name == "facenet-vggface2" and f.url.endswith("20180402-114759-vggface2.pt")
    assert list_weights()["facenet-vggface2"] == "facenet"


# --- preprocess -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_preprocess_from_config(name):
    cfg = get_pretrained_config(name)
    net = create_backbone(name, pretrained=False)
    s = cfg.input_size
    chips = np.zeros((2, s, s, 3), np.uint8)
    chips[..., 0] = 255
    x = net.preprocess(chips)
    assert x.shape == (2, 3, s, s) and x.dtype == torch.float32
    assert torch.allclose(x[:, 0], torch.tensor((255 - cfg.mean[0]) / cfg.scale))
    assert torch.allclose(x[:, 2], torch.tensor((0 - cfg.mean[2]) / cfg.scale))
    same = net.preprocess(torch.from_numpy(chips))
    assert torch.equal(x, same)
    assert net.preprocess(chips[0]).shape == (1, 3, s, s)
    with pytest.raises(ConfigError, match=str(s)):
        net.preprocess(np.zeros((1, s + 1, s + 1, 3), np.uint8))


# --- contract over the whole registry ---------------------------------------------------

@pytest.fixture(scope="module")
def random_backbones() -> dict[str, Backbone]:
    torch.manual_seed(0)
    return {name: create_backbone(name, pretrained=False) for name in ALL}


def _input(net: Backbone, n: int = 2) -> torch.Tensor:
    s = net.config.input_size
    g = torch.Generator().manual_seed(1)
    return net.preprocess(torch.randint(0, 256, (n, s, s, 3), generator=g, dtype=torch.uint8))


@pytest.mark.parametrize("name", ALL)
def test_forward_shape_and_finite(name, random_backbones):
    net = random_backbones[name].eval()
    with torch.no_grad():
        out = net(_input(net))
    assert out.shape == (2, net.embedding_dim)
    assert torch.isfinite(out).all()
    if net.config.normalized:
        assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    emb = net.embed(np.zeros((3, net.config.input_size, net.config.input_size, 3), np.uint8))
    assert emb.shape == (3, net.embedding_dim) and not net.training


@pytest.mark.parametrize("name", ALL)
def test_layer_groups_cover_every_parameter_once(name, random_backbones):
    net = random_backbones[name]
    groups = net.layer_groups()
    assert [g for g, _ in groups] == list(net.config.layer_groups)
    seen: list[int] = []
    for _, modules in groups:
        for m in modules:
            seen += [id(p) for p in m.parameters()]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in net.parameters()}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("unlocked", [0, 2])
def test_lock_gradients_reach_only_unlocked(name, unlocked, random_backbones):
    net = random_backbones[name]
    groups = net.layer_groups()
    net.lock(len(groups) - 1)
    net.lock(unlocked)
    before = [p.requires_grad for p in net.parameters()]
    net.lock(unlocked)  # idempotent
    assert [p.requires_grad for p in net.parameters()] == before
    top = {id(p) for _, mods in groups[len(groups) - unlocked:] for m in mods
           for p in m.parameters()}
    net.train()
    net.zero_grad(set_to_none=True)
    if unlocked == 0:
        assert not any(p.requires_grad for p in net.parameters())
    else:
        out = net(_input(net, 2))
        (out * torch.randn_like(out)).sum().backward()
    for pname, p in net.named_parameters():
        if id(p) in top:
            assert p.requires_grad, pname
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        else:
            assert not p.requires_grad and p.grad is None, pname
    frozen_norms = [m for _, mods in groups[:len(groups) - unlocked] for mod in mods
                    for m in mod.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert all(not m.training for m in frozen_norms)
    net.lock(len(groups))
    assert all(p.requires_grad for p in net.parameters())
    net.eval()


@pytest.mark.parametrize("name", ALL)
def test_lock_rejects_bad_counts(name, random_backbones):
    net = random_backbones[name]
    with pytest.raises(ConfigError, match="unlocked_groups"):
        net.lock(len(net.layer_groups()) + 1)
    with pytest.raises(ConfigError,
                       match=r"unlocked_groups must be an int in 0\.\.\d+ .*got -1"):
        net.lock(-1)


# --- weights resolution and fetching ----------------------------------------------------

def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SIAMFACE_CACHE", str(tmp_path / "x"))
    assert weights_cache_dir() == tmp_path / "x"


def test_missing_facenet_weights_message(tmp_path):
    cfg = get_pretrained_config("facenet")
    with pytest.raises(WeightsNotFoundError) as info:
        create_backbone("facenet")
    msg = str(info.value)
    expected = tmp_path / "weights" / "20180402-114759-vggface2.pt"
    assert str(expected) in msg
    assert cfg.sha256 in msg
    assert "siamface weights fetch facenet-vggface2" in msg and "--backbone-weights PATH" in msg
    assert expected_weights_path(cfg) == expected
    with pytest.raises(WeightsNotFoundError, match="nope.pt"):
        create_backbone("facenet", weights=tmp_path / "nope.pt")


class _FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def _fake_config(payload: bytes, sha: str | None):
    cfg = get_pretrained_config("facenet")
    return dataclasses.replace(cfg, sha256=sha, filename="fake.pt", url="https://example/fake.pt")


def test_fetch_good_download_then_cache_hit(tmp_path, monkeypatch):
    payload = b"weights" * 1000
    cfg = _fake_config(payload, hashlib.sha256(payload).hexdigest())
    calls = []
    monkeypatch.setattr(weights_mod, "_urlopen", lambda url: calls.append(url)
                        or _FakeResponse(payload))
    seen = []
    path = weights_mod.fetch_weights(cfg, tmp_path, progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "fake.pt" and path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))
    assert list(tmp_path.iterdir()) == [path]  # no temp files left
    assert weights_mod.fetch_weights(cfg, tmp_path) == path and len(calls) == 1
    assert resolve_weights(cfg, cache_dir=tmp_path) == path


def test_fetch_corrupt_download_leaves_nothing(tmp_path, monkeypatch):
    cfg = _fake_config(b"x", hashlib.sha256(b"expected").hexdigest())
    monkeypatch.setattr(weights_mod, "_urlopen", lambda url: _FakeResponse(b"corrupt"))
    with pytest.raises(WeightsHashError, match=cfg.sha256):
        weights_mod.fetch_weights(cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_cache_hit_refused(tmp_path, monkeypatch):
    cfg = _fake_config(b"x", hashlib.sha256(b"good").hexdigest())
    (tmp_path / "fake.pt").write_bytes(b"bad")
    with pytest.raises(WeightsHashError, match="fake.pt"):
        resolve_weights(cfg, cache_dir=tmp_path)
    with pytest.raises(WeightsHashError,
                       match=r"cached facenet weights file .*fake\.pt has sha256"):
        weights_mod.fetch_weights(cfg, tmp_path)


def test_fetch_by_name_unknown():
    with pytest.raises(UnknownNameError, match="facenet-vggface2"):
        fetch_weights("facenet-imagenet")


def test_fetch_by_weights_name(tmp_path, monkeypatch):
    cfg = get_pretrained_config("facenet")
    monkeypatch.setattr(weights_mod, "_urlopen", lambda url: _FakeResponse(b"not it"))
    with pytest.raises(WeightsHashError, match=f"expected {cfg.sha256}; nothing was saved"):
        fetch_weights("facenet-vggface2", tmp_path)
    assert not (tmp_path / cfg.filename).exists()


class _Payload:
    """Unpickling this object runs ``Path.touch(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_pickled_weights_payload_never_runs(tmp_path):
    """User-given .pt weights are read with ``weights_only``: a pickle that would run code on
    load is refused, and its code does not run."""
    path, marker = tmp_path / "evil.pt", tmp_path / "payload-ran"
    torch.save({"last_linear.weight": torch.zeros(1), "payload": _Payload(marker)}, path)
    with pytest.raises(CheckpointError,
                       match=r"cannot read weights from .*evil\.pt: Weights only load failed"):
        weights_mod.load_state_dict_file(path)
    with pytest.raises(CheckpointError, match=r"cannot read weights from .*evil\.pt"):
        create_backbone("facenet", weights=path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is live: a naive load does run it
    assert marker.exists()
