"""The service layer on real LFW faces: verify, analyze, embed, every input type."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import lfw_image
from siamface.service import FaceService, load


@pytest.fixture(scope="module")
def service() -> FaceService:
    return load(backbone="dlib-resnet")  # pretrained embeddings, no trained heads


@pytest.fixture(scope="module")
def faces(lfw_dir):
    return {
        "peirsol1": lfw_image(lfw_dir, "Aaron_Peirsol", 1),
        "peirsol2": lfw_image(lfw_dir, "Aaron_Peirsol", 2),
        "cook": lfw_image(lfw_dir, "AJ_Cook", 1),
        "bush1": lfw_image(lfw_dir, "George_W_Bush", 1),
        "bush2": lfw_image(lfw_dir, "George_W_Bush", 10),
    }


def test_same_person_matches_and_others_do_not(service, faces):
    same = service.verify(faces["peirsol1"], faces["peirsol2"])
    other = service.verify(faces["peirsol1"], faces["cook"])
    assert same.is_match and same.distance < 0.5
    assert not other.is_match and other.distance > 0.7
    assert same.threshold == pytest.approx(0.6) and same.threshold_source == "dlib-resnet default"
    assert same.a.detected and same.a.crop == "aligned" and len(same.a.landmarks) == 5


def test_every_input_type_gives_the_same_embedding(service, faces):
    path = faces["bush1"]
    data = path.read_bytes()
    pil = Image.open(io.BytesIO(data))
    array = np.asarray(Image.open(path).convert("RGB"))
    embeddings = service.embed([str(path), path, data, pil, array])
    assert embeddings.shape == (5, 128)
    np.testing.assert_allclose(embeddings, np.broadcast_to(embeddings[0], embeddings.shape),
                               atol=1e-6)


def test_no_face_returns_no_verdict(service, faces):
    blank = np.full((200, 200, 3), 127, np.uint8)
    result = service.verify(blank, faces["cook"])
    assert not result.a.detected and result.a.fallback == "center-crop"
    assert result.status == "no_face_a" and result.is_match is None and result.distance is None
    assert result.a.box is None and result.a.embedding is None and result.a.gender is None
    assert "face score" in result.a.no_face and result.a.face_score < 0.1
    assert result.b.detected and result.b.has_face and result.b.face_score > 0.9


def test_untrained_gender_head_reports_no_gender(service, faces):
    (face,) = service.analyze(faces["cook"])
    assert face.detected and face.gender is None and not service.gender_available


def test_user_threshold_is_used(service, faces):
    result = service.verify(faces["peirsol1"], faces["peirsol2"], threshold=0.01)
    assert not result.is_match and result.threshold == 0.01 and result.threshold_source == "user"


def test_verify_many_matches_verify(service, faces):
    pairs = [(faces["bush1"], faces["bush2"]), (faces["bush1"], faces["cook"])]
    many = service.verify_many(pairs)
    for (a, b), result in zip(pairs, many):
        assert result.distance == pytest.approx(service.verify(a, b).distance, abs=1e-5)


def test_flip_averaging_changes_little(faces):
    flipped = load(backbone="dlib-resnet", flip=True)
    plain = load(backbone="dlib-resnet")
    a = flipped.verify(faces["bush1"], faces["bush2"])
    b = plain.verify(faces["bush1"], faces["bush2"])
    assert a.is_match and b.is_match
    assert a.distance != b.distance and abs(a.distance - b.distance) < 0.1


def test_result_to_dict_is_json_ready(service, faces):
    import json

    text = json.dumps(service.verify(faces["peirsol1"], faces["cook"]).to_dict())
    assert '"is_match": false' in text


def test_flip_averaging_follows_the_checkpoint(tmp_path):
    from siamface.checkpoint import save_checkpoint
    from siamface.service import _untrained_default

    model, _ = _untrained_default("dlib-resnet", None)
    for flip in (True, False):
        path = tmp_path / f"flip-{flip}.safetensors"
        save_checkpoint(path, model, threshold=0.6, threshold_source="test",
                        gender_trained=False, preprocessing={"crop": "aligned",
                                                             "flip_average": flip})
        assert load(path).flip is flip
        assert load(path, flip=not flip).flip is (not flip)  # an explicit choice wins
