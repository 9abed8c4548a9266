"""No face, no verdict: images without a face never MATCH, get no gender, and say which image
has no face; ``--fallback-policy always`` keeps the old centre-crop behaviour."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from siamface import examples
from siamface.align import center_crop
from siamface.chip_restore import restore_chip
from siamface.cli.main import main
from siamface.errors import NoFaceError
from siamface.service import load

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "result.schema.json")
                    .read_text(encoding="utf-8"))
FACE = str(examples.path("kofi_annan_1"))
FACE2 = str(examples.path("kofi_annan_2"))


def _save(folder: Path, name: str, pixels: np.ndarray) -> str:
    path = folder / name
    Image.fromarray(pixels).save(path, quality=95)
    return str(path)


@pytest.fixture(scope="module")
def non_faces(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("non_faces")
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 300, dtype=np.uint8)
    sklearn_images = resources.files("sklearn.datasets") / "images"
    return {
        "noise": _save(folder, "noise.jpg", rng.integers(0, 256, (300, 300, 3), np.uint8)),
        "noise2": _save(folder, "noise2.jpg", rng.integers(0, 256, (300, 300, 3), np.uint8)),
        "grey": _save(folder, "grey.png", np.full((300, 300, 3), 128, np.uint8)),
        "tiny": _save(folder, "tiny.png", np.zeros((10, 10, 3), np.uint8)),
        "gradient": _save(folder, "gradient.png",
                          np.repeat(np.stack([ramp] * 3, axis=-1)[None], 200, axis=0)),
        "china": str(sklearn_images / "china.jpg"),
        "flower": str(sklearn_images / "flower.jpg"),
    }


def _verify(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["verify", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    jsonschema.validate(out, SCHEMA)
    return code, out


@pytest.mark.parametrize("a, b, status", [
    ("noise", "noise2", "no_face_both"), ("grey", "tiny", "no_face_both"),
    ("noise", "FACE", "no_face_a"), ("FACE", "gradient", "no_face_b"),
    ("china", "flower", "no_face_both"),
])
def test_verify_without_a_face_never_matches(non_faces, capsys, a, b, status):
    paths = {**non_faces, "FACE": FACE}
    code, out = _verify(capsys, paths[a], paths[b])
    assert code == 3 and out["status"] == status
    assert out["is_match"] is None and out["distance"] is None
    for side, name in (("a", a), ("b", b)):
        face = out[side]
        if name == "FACE":
            assert face["detected"] and face["no_face"] is None and face["gender"] is not None
            assert face["face_score"] > 0.9
        else:
            assert face["no_face"] and face["gender"] is None and not face["detected"]
            assert face["face_score"] < 0.5


def test_verify_text_names_the_image_without_a_face(non_faces, capsys):
    assert main(["verify", non_faces["noise"], FACE]) == 3
    out = capsys.readouterr().out
    assert out.startswith("NO FACE in A  no verdict") and "MATCH" not in out
    assert "A: " + non_faces["noise"] + "  NO FACE:" in out
    assert main(["verify", non_faces["noise"], non_faces["noise2"]]) == 3
    assert capsys.readouterr().out.startswith("NO FACE in A and B")


def test_verify_two_faces_still_has_a_verdict(capsys):
    code, out = _verify(capsys, FACE, FACE2)
    assert code == 0 and out["status"] == "match" and out["a"]["face_score"] > 0.9


def test_analyze_reports_the_absent_face_without_gender(non_faces, capsys):
    assert main(["analyze", non_faces["noise"], FACE, "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    jsonschema.validate(out, SCHEMA)
    noise, face = out["faces"]
    assert noise["no_face"] and noise["gender"] is None
    assert face["no_face"] is None and face["gender"]["label"] == "male"
    assert main(["analyze", non_faces["noise"]]) == 3
    text = capsys.readouterr().out
    assert "NO FACE" in text and "male" not in text


def test_embed_skips_and_counts_absent_faces(non_faces, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name, src in (("face.jpg", FACE), ("noise.jpg", non_faces["noise"])):
        (folder / name).write_bytes(Path(src).read_bytes())
    out = tmp_path / "e.npz"
    assert main(["embed", str(folder), "--out", str(out), "--no-progress"]) == 3
    assert list(np.load(out)["paths"]) == ["face.jpg"]
    err = capsys.readouterr().err
    assert "1 image(s) skipped" in err and "noise.jpg" in err and "face score" in err


@pytest.fixture(scope="module")
def services():
    return {policy: load(fallback_policy=policy) for policy in ("auto", "always", "never")}


def test_always_reproduces_the_centre_crop_fallback(services, non_faces):
    """``always`` is the old behaviour: the centre crop is embedded, the verdict is computed."""
    service = services["always"]
    images = [service.load_image(non_faces[k]) for k in ("noise", "noise2")]
    result = service.verify(*images)
    assert result.status in ("match", "no_match") and result.a.no_face is None
    assert result.a.fallback == "center-crop" and not result.a.detected
    # a noise picture's chip is also restored (its noise gate fires) before it is embedded
    chips = np.stack([restore_chip(center_crop(im, 150, fraction=0.8),
                                   service.pipeline.chip_restore)[0] for im in images])
    assert result.a.restored == "denoise"
    np.testing.assert_array_equal(result.a.chip, chips[0])
    embeddings, _ = service._run_chips(chips)
    assert result.distance == pytest.approx(float(np.linalg.norm(embeddings[0] - embeddings[1])),
                                            abs=1e-6)
    assert 0 <= result.a.face_score < 0.5  # scored all the same


def test_policies_agree_on_detected_faces(services):
    results = {p: s.verify(FACE, FACE2) for p, s in services.items()}
    base = results["auto"]
    for result in results.values():
        assert result.distance == pytest.approx(base.distance, abs=1e-6)
        assert result.a.face_score == pytest.approx(base.a.face_score)


def test_never_uses_no_fallback_and_embed_refuses(services, non_faces):
    (face,) = services["never"].analyze(non_faces["grey"])
    assert face.no_face and "never" in face.no_face and face.embedding is None
    with pytest.raises(NoFaceError, match=r"no face in .*grey\.png"):
        services["auto"].embed([FACE, non_faces["grey"]])
