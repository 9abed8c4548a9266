"""The shipped default model: a trained gender head and a calibrated threshold, offline."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import lfw_image
from siamface.checkpoint import read_checkpoint_info
from siamface.cli.main import main
from siamface.service import default_model_path, load


@pytest.fixture(scope="module")
def model():
    return load()


def test_default_model_ships_inside_the_package():
    path = default_model_path()
    assert path is not None and path.stat().st_size < 8 * 1024 * 1024
    info = read_checkpoint_info(path)
    assert info.backbone == "dlib-resnet" and info.gender_trained
    assert info.threshold_source.startswith("youden")
    assert 0.4 < info.threshold < 0.8
    assert info.head.gender_classes == ("male", "female")
    assert info.preprocessing["flip_average"] is True  # its threshold assumes flip averaging
    assert load().flip is True
    # retrained for diverse faces by scripts/train_fair_default.py: the metadata names the
    # base model and the data, and what was kept out
    training = info.training
    assert training["recipe"] == "fair-default-1" and len(training["base"]["sha256"]) == 64
    assert any("UTKFace" in d for d in training["gender"]["data"])
    assert any("FairFace train" in d for d in training["gender"]["data"])
    assert "FairFace val" in training["held_out"]


def _expected_gender(model, face):
    """The gender prediction recomputed from the face's embedding and the head's weights.

    The gender head is a linear layer on the backbone features; without projection or
    normalisation the embedding is those features. Flip averaging averages the features and
    the logits of the image and its mirror, and a linear head commutes with that average, so
    the head applied to the (averaged) embedding gives the (averaged) logit either way.
    """
    head = model.info.head
    assert not head.projection and not head.normalize  # else the embedding is not the features
    linear = model.model.gender_head[1]
    weight = linear.weight.detach().double().numpy()[0]
    bias = float(linear.bias.detach().double().numpy()[0])
    logit = float(np.dot(weight, face.embedding.astype(np.float64)) + bias)
    first, second = head.gender_classes
    p_second = 1.0 / (1.0 + math.exp(-logit))
    return {first: 1.0 - p_second, second: p_second}


def test_default_model_reports_gender(model, lfw_dir):
    women = [("AJ_Cook", 1), ("Angelina_Jolie", 1), ("Serena_Williams", 1), ("Laura_Bush", 1)]
    men = [("Aaron_Peirsol", 1), ("George_W_Bush", 1), ("Tony_Blair", 1), ("Colin_Powell", 1)]
    for people, label in ((women, "female"), (men, "male")):
        for name, i in people:
            (face,) = model.analyze(lfw_image(lfw_dir, name, i))
            assert face.gender is not None
            assert face.gender.label == label, (name, face.gender)
            expected = _expected_gender(model, face)
            got = face.gender.probabilities
            assert set(got) == set(expected) == {"male", "female"}
            for cls, p in expected.items():
                assert got[cls] == pytest.approx(p, abs=1e-4), (name, cls, got, expected)
            # the label is the class whose probability is >= 0.5, and its probability is reported
            assert face.gender.label == ("female" if expected["female"] >= 0.5 else "male")
            assert face.gender.probability == pytest.approx(expected[face.gender.label],
                                                            abs=1e-4)
            assert face.gender.probability == got[face.gender.label]


def test_cli_uses_shipped_threshold_and_gender(lfw_dir, capsys):
    a = str(lfw_image(lfw_dir, "Laura_Bush", 1))
    b = str(lfw_image(lfw_dir, "Laura_Bush", 2))
    assert main(["verify", a, b, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    info = read_checkpoint_info(default_model_path())
    assert out["threshold"] == pytest.approx(info.threshold)
    assert out["threshold_source"] == info.threshold_source
    assert out["is_match"] and out["a"]["gender"]["label"] == "female"
    assert main(["analyze", a]) == 0
    text = capsys.readouterr().out
    assert "female (" in text and "no trained gender head" not in text
