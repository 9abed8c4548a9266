"""The multi-task Siamese model: shapes, the pair forward, and the heads."""

from __future__ import annotations

import pytest
import torch

from siamface.backbones import create_backbone
from siamface.errors import ConfigError
from siamface.model import HeadConfig, SiameseMultiTask


@pytest.fixture(scope="module")
def backbone():
    return create_backbone("dlib-resnet", pretrained=True)


def test_pair_forward_matches_single_forward(backbone):
    torch.manual_seed(0)
    model = SiameseMultiTask(backbone, HeadConfig(projection=True)).eval()
    a = torch.randn(3, 3, 150, 150) * 0.3
    b = torch.randn(3, 3, 150, 150) * 0.3
    with torch.no_grad():
        distance, ga, gb = model(a, b)
        ea, la = model.forward_single(a)
        eb, lb = model.forward_single(b)
    assert distance.shape == (3,) and ga.shape == (3,) and gb.shape == (3,)
    torch.testing.assert_close(distance, torch.linalg.norm(ea - eb, dim=1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ga, la)
    torch.testing.assert_close(gb, lb)


def test_projection_starts_as_identity(backbone):
    model = SiameseMultiTask(backbone, HeadConfig(projection=True)).eval()
    x = torch.randn(2, 3, 150, 150) * 0.3
    with torch.no_grad():
        emb, _ = model.forward_single(x)
        raw = backbone(x)
    torch.testing.assert_close(emb, raw)


def test_normalized_embeddings_have_unit_norm(backbone):
    model = SiameseMultiTask(backbone, HeadConfig(normalize=True)).eval()
    with torch.no_grad():
        emb, _ = model.forward_single(torch.randn(2, 3, 150, 150) * 0.3)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(2))


def test_distance_gradient_is_finite_for_identical_inputs(backbone):
    model = SiameseMultiTask(backbone)
    e = torch.randn(4, 128, requires_grad=True)
    model.distance(e, e.detach().clone()).sum().backward()
    assert torch.isfinite(e.grad).all()


@pytest.mark.parametrize("bad, message", [
    ({"gender_dropout": 1.0}, r"gender_dropout must be in \[0, 1\), got 1\.0"),
    ({"gender_dropout": -0.1}, r"gender_dropout must be in \[0, 1\), got -0\.1"),
    ({"gender_classes": ("a",)}, r"gender_classes needs two names, got \('a',\)"),
])
def test_head_config_rejects_bad_values(bad, message):
    with pytest.raises(ConfigError, match=message):
        HeadConfig(**bad)


def test_head_config_round_trip_and_unknown_keys():
    head = HeadConfig(normalize=True, projection=True, gender_dropout=0.5)
    assert HeadConfig.from_dict(head.to_dict()) == head
    with pytest.raises(ConfigError, match="unknown head config keys"):
        HeadConfig.from_dict({"dropout": 0.5})
