"""siamface.faces: selection rules, crop modes, fallback, params; real faces with MTCNN."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from siamface.align import DLIB_150_TEMPLATE
from siamface.errors import ConfigError, UnknownNameError
from siamface.faces import DEFAULT_SELECT, FaceCrop, FacePipeline, rank_faces


@dataclass
class FakeDetections:
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray


class FakeDetector:
    """Returns fixed detections and counts its calls."""

    def __init__(self, boxes, scores=None) -> None:
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        self.detections = FakeDetections(
            boxes=boxes,
            scores=np.ones(len(boxes), np.float32) if scores is None else np.asarray(scores),
            landmarks=np.stack([_landmarks_in(b) for b in boxes]) if len(boxes) else
            np.zeros((0, 5, 2), np.float32),
        )
        self.calls = 0
        self.min_face_size = 20.0

    def detect(self, image):
        self.calls += 1
        if isinstance(image, list):
            return [self.detections for _ in image]
        return self.detections


def _landmarks_in(box: np.ndarray) -> np.ndarray:
    """Template landmarks scaled (uniformly) into a box, as if the box were the chip's middle
    70%: a similarity of the template."""
    x1, y1, x2, _ = box
    unit = (DLIB_150_TEMPLATE.as_array() / 150 - 0.15) / 0.7
    return (np.array([x1, y1]) + unit * (x2 - x1)).astype(np.float32)


# a big face near the left edge, a smaller one in the middle, a tiny one in a corner
BOXES = np.array([[0, 60, 90, 160], [130, 80, 190, 150], [280, 0, 300, 20]], np.float32)
SHAPE = (240, 320, 3)


def test_rank_faces_rules() -> None:
    assert rank_faces(BOXES, SHAPE, "largest").tolist() == [0, 1, 2]
    assert rank_faces(BOXES, SHAPE, "central").tolist() == [1, 0, 2]
    assert rank_faces(BOXES, SHAPE, "score")[0] == 1  # big but off-centre loses
    assert rank_faces(BOXES, SHAPE, "all").tolist() == [0, 1, 2]
    assert rank_faces(np.zeros((0, 4)), SHAPE, "largest").tolist() == []
    # two equal faces, one centred: score prefers the centred one; a much bigger face
    # slightly off centre beats a small centred one
    centred = np.array([[140, 100, 180, 140], [10, 10, 50, 50]])
    assert rank_faces(centred, SHAPE, "score")[0] == 0
    big_near = np.array([[150, 110, 170, 130], [100, 40, 240, 200]])
    assert rank_faces(big_near, SHAPE, "score")[0] == 1


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="valid: aligned, padded, center"):
        FacePipeline(crop="tight")
    with pytest.raises(UnknownNameError, match="largest, central, score, all"):
        FacePipeline(select="biggest")
    with pytest.raises(UnknownNameError, match="unknown selection rule 'nope'; valid: largest"):
        rank_faces(BOXES, SHAPE, "nope")
    with pytest.raises(ConfigError, match="chip_size must be a positive integer, got 0"):
        FacePipeline(chip_size=0)
    with pytest.raises(ConfigError, match=r"center_fraction must be in \(0, 1\], got 1\.5"):
        FacePipeline(center_fraction=1.5)


@pytest.mark.parametrize("rule, expected", [("largest", 0), ("central", 1), ("score", 1)])
@pytest.mark.parametrize("mode", ["aligned", "padded"])
def test_crop_selects_by_rule(rule: str, expected: int, mode: str) -> None:
    image = np.full(SHAPE, 90, np.uint8)
    pipe = FacePipeline(crop=mode, select=rule, detector=FakeDetector(BOXES))
    face = pipe.crop(image)
    assert isinstance(face, FaceCrop)
    np.testing.assert_array_equal(face.box, BOXES[expected])
    assert face.detected and face.fallback is None
    assert face.crop == mode and face.select == rule
    assert face.chip.shape == (150, 150, 3) and face.chip.dtype == np.uint8
    assert face.landmarks.shape == (5, 2) and face.score == 1.0


def test_aligned_chip_puts_landmarks_on_template() -> None:
    # bright dots at the detector's landmarks end up at the template points
    det = FakeDetector(BOXES[1:2])
    image = np.zeros(SHAPE, np.uint8)
    for x, y in np.round(det.detections.landmarks[0]).astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    face = FacePipeline(chip_size=300, detector=det).crop(image)
    for x, y in np.round(DLIB_150_TEMPLATE.scaled(300).as_array()).astype(int):
        assert face.chip[y - 2 : y + 3, x - 2 : x + 3].max() > 100


def test_no_face_falls_back_to_center_crop() -> None:
    blank = np.full((100, 200, 3), 255, np.uint8)
    blank[10:90, 60:140] = 0  # the central 80% square of the short side
    for mode in ("aligned", "padded"):
        pipe = FacePipeline(crop=mode, chip_size=32, detector=FakeDetector([]))
        face = pipe.crop(blank)
        assert not face.detected and face.fallback == "center-crop"
        assert face.box is None and face.landmarks is None and face.score is None
        assert face.chip.shape == (32, 32, 3) and face.chip.max() == 0
        [only] = pipe.crop_all(blank)
        assert only.fallback == "center-crop"


def test_center_mode_skips_detection() -> None:
    det = FakeDetector(BOXES)
    pipe = FacePipeline(crop="center", detector=det)
    face = pipe.crop(np.zeros(SHAPE, np.uint8))
    faces = pipe.crop_batch([np.zeros(SHAPE, np.uint8)] * 2)
    assert det.calls == 0
    assert not face.detected and face.fallback is None and face.crop == "center"
    assert len(faces) == 2 and "detector" not in pipe.params()


def test_crop_all_and_batch() -> None:
    image = np.zeros(SHAPE, np.uint8)
    det = FakeDetector(BOXES)
    faces = FacePipeline(select="central", detector=det).crop_all(image)
    assert [f.box[0] for f in faces] == [130, 0, 280]  # every face, best first
    assert all(f.select == "all" for f in faces)
    pipe = FacePipeline(select="largest", detector=det)
    batch = pipe.crop_batch([image, image, image])
    assert det.calls == 2  # one crop_all call + one batched detection
    assert [f.box[0] for f in batch] == [0, 0, 0]
    with pytest.raises(ConfigError, match="crop_all"):
        FacePipeline(select="all", detector=det).crop(image)
    assert len(FacePipeline(select="all", detector=det).crop_all(image)) == 3


def test_params_are_json_and_change_with_settings() -> None:
    det = FakeDetector(BOXES)
    a = FacePipeline(detector=det).params()
    assert json.loads(json.dumps(a)) == a
    assert a["template"]["points"][0] == list(DLIB_150_TEMPLATE.to_dict()["points"][0])
    assert a["select"] == DEFAULT_SELECT and a["detector"]["min_face_size"] == 20.0
    b = FacePipeline(chip_size=160, detector=det).params()
    c = FacePipeline(crop="padded", pad=0.3, detector=det).params()
    assert a != b and b["template"]["size"] == 160 and c["pad"] == 0.3
    assert FacePipeline(select="largest", detector=det).params() != a


def test_the_cascade_version_keys_the_crop_cache(monkeypatch) -> None:
    from siamface.cache import params_hash
    from siamface.detect import MTCNN
    from siamface.detect.cascade import Cascade

    pipeline = FacePipeline(detector=MTCNN())
    before = pipeline.params()
    assert before["detector"]["version"] == Cascade.version
    monkeypatch.setattr(Cascade, "version", Cascade.version + 1)
    assert params_hash(pipeline.params()) != params_hash(before)


# ------------------------------------------------------------------ real LFW faces, MTCNN


@pytest.fixture(scope="module")
def two_faces(lfw_dir):
    """Two LFW photos pasted side by side on a wider canvas: a big face on the left edge and a
    smaller face in the middle."""
    import cv2

    from siamface.io import load_image

    big = load_image(lfw_dir / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg")
    small = load_image(lfw_dir / "images" / "Serena_Williams" / "Serena_Williams_0001.jpg")
    small = cv2.resize(small, (170, 170), interpolation=cv2.INTER_AREA)
    canvas = np.full((250, 560, 3), 128, np.uint8)
    canvas[:, :250] = big
    canvas[40:210, 195:365] = small  # centre (280, 125) = the canvas centre
    return canvas


@pytest.mark.lfw
def test_rules_pick_the_right_real_face(two_faces) -> None:
    from siamface.detect import MTCNN

    detector = MTCNN()
    centre_x = two_faces.shape[1] / 2
    largest = FacePipeline(select="largest", detector=detector).crop(two_faces)
    central = FacePipeline(select="central", detector=detector).crop(two_faces)
    assert (largest.box[0] + largest.box[2]) / 2 < 200  # the big face on the left
    assert abs((central.box[0] + central.box[2]) / 2 - centre_x) < 30
    everyone = FacePipeline(select="central", detector=detector).crop_all(two_faces)
    assert len(everyone) >= 2 and everyone[0].box.tolist() == central.box.tolist()


@pytest.mark.lfw
def test_real_blank_image_falls_back(lfw_dir) -> None:
    from siamface.detect import MTCNN

    face = FacePipeline(detector=MTCNN()).crop(np.full((200, 300, 3), 200, np.uint8))
    assert not face.detected and face.fallback == "center-crop"
    assert face.chip.shape == (150, 150, 3)


@pytest.mark.lfw
def test_real_aligned_chip_landmarks_and_sources(lfw_dir) -> None:
    from siamface.detect import MTCNN

    path = lfw_dir / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"
    detector = MTCNN()
    pipe = FacePipeline(detector=detector)
    from_path = pipe.crop(path)
    from_bytes = pipe.crop(path.read_bytes())
    np.testing.assert_array_equal(from_path.chip, from_bytes.chip)
    again = detector.detect(from_path.chip)
    k = int(np.argmax(again.scores))
    err = np.hypot(*(again.landmarks[k] - DLIB_150_TEMPLATE.as_array()).T)
    assert err[:2].max() < 8.0, np.round(err, 2)  # precise checks: tests/test_align.py
    assert from_path.detected and from_path.landmarks.shape == (5, 2)
    batch = pipe.crop_batch([path, path.read_bytes()])
    # batched detection differs from single detection by float rounding only (~1e-5 px)
    for face in batch:
        np.testing.assert_allclose(face.landmarks, from_path.landmarks, atol=1e-3)
        assert np.abs(face.chip.astype(int) - from_path.chip).max() <= 1


def test_pipeline_for_backbone_uses_its_config():
    from siamface.backbones import get_pretrained_config

    dlib = FacePipeline.for_backbone(get_pretrained_config("dlib-resnet"))
    assert dlib.chip_size == 150 and dlib.template.name == "dlib-150"
    assert dlib.crop_mode == "aligned"
    facenet = FacePipeline.for_backbone(get_pretrained_config("facenet"), crop="padded")
    assert facenet.chip_size == 160 and facenet.crop_mode == "padded"
    assert facenet.template.size == 160
