"""The shipped default model: a trained gender head and a calibrated threshold, offline."""

from __future__ import annotations

import json

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


def test_default_model_reports_gender(model, lfw_dir):
    women = [("AJ_Cook", 1), ("Angelina_Jolie", 1), ("Serena_Williams", 1), ("Laura_Bush", 1)]
    men = [("Aaron_Peirsol", 1), ("George_W_Bush", 1), ("Tony_Blair", 1), ("Colin_Powell", 1)]
    for people, label in ((women, "female"), (men, "male")):
        for name, i in people:
            (face,) = model.analyze(lfw_image(lfw_dir, name, i))
            assert face.gender is not None
            assert face.gender.label == label, (name, face.gender)
            assert 0.5 <= face.gender.probability <= 1.0


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
