"""The console script in-process: verify, analyze, embed, weights, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import lfw_image
from siamface.cli.main import main

UNTRAINED = ["--backbone", "dlib-resnet"]


@pytest.fixture(scope="module")
def pair(lfw_dir):
    return str(lfw_image(lfw_dir, "Aaron_Peirsol", 1)), str(lfw_image(lfw_dir, "Aaron_Peirsol", 2))


def test_verify_json_and_figure(pair, tmp_path, capsys):
    figure = tmp_path / "fig.png"
    assert main(["verify", *pair, "--json", "--save-figure", str(figure), *UNTRAINED]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["is_match"] is True and out["a"]["detected"] is True
    assert out["a"]["source"] == pair[0] and out["b"]["source"] == pair[1]
    image = Image.open(figure)
    assert image.size[0] > 300 and image.size[1] > 200
    # the verdict banner is drawn in green for a match
    pixels = np.asarray(image.convert("RGB"))[5:40, 10:120].reshape(-1, 3)
    assert ((pixels[:, 1] > 100) & (pixels[:, 0] < 60)).any()


def test_verify_text_output(pair, capsys):
    assert main(["verify", *pair, "--threshold", "0.01", *UNTRAINED]) == 1  # NO MATCH
    out = capsys.readouterr().out
    assert out.startswith("NO MATCH") and "threshold 0.0100 (user)" in out


def test_verify_unreadable_image_exits_2(pair, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert main(["verify", pair[0], str(bad), *UNTRAINED]) == 2
    err = capsys.readouterr().err.strip()
    assert "bad.jpg" in err and len(err.splitlines()) == 1


def test_verify_missing_image_exits_2(pair, tmp_path, capsys):
    assert main(["verify", pair[0], str(tmp_path / "missing.jpg")]) == 2
    assert "missing.jpg" in capsys.readouterr().err


def test_verify_no_face_names_the_fallback(pair, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 160), (90, 90, 90)).save(blank)
    assert main(["verify", pair[0], str(blank), "--json", *UNTRAINED]) == 3  # no verdict
    out = json.loads(capsys.readouterr().out)
    assert out["b"]["detected"] is False and out["b"]["fallback"] == "center-crop"
    assert out["status"] == "no_face_b" and out["is_match"] is None and out["distance"] is None
    # today's behaviour, for pre-cropped faces: the centre crop is used, and scored
    assert main(["verify", pair[0], str(blank), "--json", "--fallback-policy", "always",
                 *UNTRAINED]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "no_match" and out["b"]["no_face"] is None
    assert out["b"]["face_score"] < 0.5


@pytest.mark.parametrize("content", [b"", b"garbage" * 100])
def test_corrupt_checkpoint_exits_2(pair, tmp_path, capsys, content):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(content)
    assert main(["verify", *pair, "--model", str(ckpt)]) == 2
    assert "model.safetensors" in capsys.readouterr().err


def test_analyze_untrained_says_so(pair, capsys):
    assert main(["analyze", pair[0], *UNTRAINED]) == 0
    out = capsys.readouterr().out
    assert "no trained gender head" in out and "female" not in out and " male" not in out


def test_analyze_json(pair, capsys):
    assert main(["analyze", *pair, "--json", *UNTRAINED]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["gender_head"] == "untrained" and len(out["faces"]) == 2
    assert all(face["gender"] is None for face in out["faces"])


def test_embed_folder(lfw_dir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in (1, 2):
        (folder / f"p{i}.jpg").write_bytes(lfw_image(lfw_dir, "Aaron_Peirsol", i).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    out = tmp_path / "emb.npz"
    assert main(["embed", str(folder), "--out", str(out), "--no-progress", *UNTRAINED]) == 3
    data = np.load(out)
    assert list(data["paths"]) == ["p1.jpg", "p2.jpg"]
    assert data["embeddings"].shape == (2, 128) and data["detected"].all()
    assert np.linalg.norm(data["embeddings"][0] - data["embeddings"][1]) < 0.6
    err = capsys.readouterr().err
    assert "1 image(s) skipped" in err and "broken.jpg" in err


def test_embed_missing_folder_exits_2(tmp_path, capsys):
    assert main(["embed", str(tmp_path / "none"), "--out", str(tmp_path / "e.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_weights_list_and_path(capsys):
    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "dlib-resnet" in out and "facenet-vggface2" in out
    assert main(["weights", "path", "facenet-vggface2"]) == 0
    assert "20180402-114759-vggface2.pt" in capsys.readouterr().out


def test_unknown_backbone_lists_valid_ones(pair, capsys):
    assert main(["verify", *pair, "--backbone", "resnet-9000"]) == 2
    err = capsys.readouterr().err
    assert "resnet-9000" in err and "dlib-resnet" in err


def test_bad_flag_value_is_a_usage_error(pair):
    with pytest.raises(SystemExit) as exc:
        main(["verify", *pair, "--crop", "diagonal"])
    assert exc.value.code == 2


@pytest.mark.parametrize("command", [None, "verify", "analyze", "embed", "prepare", "distort",
                                     "train", "weights"])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: siamface" in out
    if command is None:
        assert all(name in out for name in ("verify", "analyze", "train", "weights"))


def test_invalid_device_is_a_clear_error(pair, capsys):
    assert main(["verify", *pair, "--device", "bogus", *UNTRAINED]) == 2
    assert "invalid device 'bogus'" in capsys.readouterr().err


def test_embed_out_must_be_a_file(lfw_dir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(lfw_image(lfw_dir, "Aaron_Peirsol", 1).read_bytes())
    assert main(["embed", str(folder), "--out", str(tmp_path), *UNTRAINED]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_unwritable_figure_path_exits_2(pair, tmp_path, capsys):
    target = tmp_path / "missing-dir-is-a-file"
    target.write_text("x")
    assert main(["verify", *pair, "--save-figure", str(target / "fig.png"), *UNTRAINED]) == 2
    assert "error" in capsys.readouterr().err
