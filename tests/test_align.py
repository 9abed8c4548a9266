"""siamface.align: similarity transforms, warps, crops, templates; dlib chip agreement."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from siamface.align import (
    ARCFACE_112_TEMPLATE,
    DLIB_150_TEMPLATE,
    TEMPLATES,
    FaceTemplate,
    align_face,
    center_crop,
    invert_affine,
    padded_crop,
    similarity_transform,
    transform_points,
    warp_affine,
)

REPO = Path(__file__).resolve().parents[1]


def _similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def test_similarity_transform_recovers_exact_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 200, size=(5, 2))
    truth = _similarity(0.3, 1.7, -12.0, 40.0)
    got = similarity_transform(src, transform_points(truth, src))
    np.testing.assert_allclose(got, truth, atol=1e-9)


def test_similarity_transform_is_least_squares_under_noise() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, size=(50, 2))
    truth = _similarity(-0.8, 0.6, 5.0, 7.0)
    dst = transform_points(truth, src) + rng.normal(0, 0.5, size=src.shape)
    got = similarity_transform(src, dst)
    np.testing.assert_allclose(got[:, :2], truth[:, :2], atol=0.01)
    np.testing.assert_allclose(got[:, 2], truth[:, 2], atol=0.3)
    residual = np.sum((transform_points(got, src) - dst) ** 2)
    # any perturbation of the fitted similarity increases the squared error
    for delta in (0.01, -0.01):
        worse = similarity_transform(src, dst)
        worse[0, 2] += delta
        assert np.sum((transform_points(worse, src) - dst) ** 2) > residual


def test_similarity_transform_never_reflects() -> None:
    src = np.array([[0, 0], [10, 0], [0, 10], [10, 10], [5, 3]], dtype=float)
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    a, b = m[0, 0], m[1, 0]  # a rotation-scale matrix has the form [[a, -b], [b, a]]
    np.testing.assert_allclose(m[:, :2], [[a, -b], [b, a]], atol=1e-12)


def test_weighted_similarity_transform() -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, size=(5, 2))
    dst = transform_points(_similarity(0.2, 1.3, 4.0, -2.0), src)
    dst[3:] += 25.0  # two outliers
    ignored = similarity_transform(src, dst, weights=[1, 1, 1, 0, 0])
    np.testing.assert_allclose(ignored, similarity_transform(src[:3], dst[:3]), atol=1e-9)
    # integer weights are the same as repeating points
    repeated = similarity_transform(np.vstack([src, src[:1]]), np.vstack([dst, dst[:1]]))
    np.testing.assert_allclose(
        similarity_transform(src, dst, weights=[2, 1, 1, 1, 1]), repeated, atol=1e-9
    )
    with pytest.raises(ValueError, match="weights"):
        similarity_transform(src, dst, weights=[1, 1, 1, 1, -1])


def test_similarity_transform_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="all the same"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))


def test_invert_affine_round_trip() -> None:
    m = _similarity(1.1, 2.5, 3.0, -4.0)
    pts = np.array([[1.0, 2.0], [30.0, -5.0]])
    np.testing.assert_allclose(transform_points(invert_affine(m), transform_points(m, pts)), pts)


def test_warp_affine_translation_and_border() -> None:
    img = np.arange(20 * 20 * 3, dtype=np.uint8).reshape(20, 20, 3)
    m = np.array([[1.0, 0, -5], [0, 1.0, -3]])  # chip (x, y) = image (x + 5, y + 3)
    chip = warp_affine(img, m, 10)
    np.testing.assert_array_equal(chip, img[3:13, 5:15])
    shifted = np.array([[1.0, 0, 5], [0, 1.0, 5]])  # chip (x, y) = image (x - 5, y - 5)
    outside = warp_affine(img, shifted, 10)
    assert outside.shape == (10, 10, 3) and outside.dtype == np.uint8
    assert outside[0, 0].tolist() == [0, 0, 0] and outside[-1, -1].tolist() == img[4, 4].tolist()
    replicated = warp_affine(img, shifted, 10, border="replicate")
    assert replicated[0, 0].tolist() == img[0, 0].tolist()


def test_warp_affine_large_downscale_is_smooth() -> None:
    # a 1-pixel checkerboard shrunk 8x must come out mid grey (averaged), not aliased
    img = ((np.indices((400, 400)).sum(0) % 2) * 255).astype(np.uint8)[..., None].repeat(3, 2)
    chip = warp_affine(img, np.array([[0.125, 0, 0], [0, 0.125, 0]]), 50)
    assert abs(chip[5:-5, 5:-5].mean() - 127.5) < 3
    assert chip[5:-5, 5:-5].std() < 3


def test_padded_crop_pads_and_clips() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[40:60, 40:60] = 255  # the "face"
    chip = padded_crop(img, np.array([40, 40, 60, 60]), 28, pad=0.2)
    # 20% of 20 px on each side: a 28 px window with the face in the middle 20 px
    assert chip.shape == (28, 28, 3)
    assert chip[4:24, 4:24].min() == 255 and chip[:3].max() == 0 and chip[:, :3].max() == 0
    edge = padded_crop(img, np.array([-10, 90, 10, 120]), 16)
    assert edge.shape == (16, 16, 3)  # clipped to the image, never empty


def test_center_crop_takes_central_square() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[10:90, 60:140] = 200  # exactly the central 80% square of the short side
    chip = center_crop(img, 40, fraction=0.8)
    assert chip.shape == (40, 40, 3) and chip.min() == 200
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\], got 0\.0"):
        center_crop(img, 40, fraction=0.0)


def test_template_scaling() -> None:
    assert DLIB_150_TEMPLATE.scaled(150) is DLIB_150_TEMPLATE
    big = DLIB_150_TEMPLATE.scaled(300)
    assert big.size == 300
    np.testing.assert_allclose(
        (big.as_array() + 0.5) / 2 - 0.5, DLIB_150_TEMPLATE.as_array(), atol=1e-12
    )
    np.testing.assert_allclose(big.scaled(150).as_array(), DLIB_150_TEMPLATE.as_array())
    assert big.weights == DLIB_150_TEMPLATE.weights
    with pytest.raises(ValueError,
                       match=r"template 'bad' needs 5 finite \(x, y\) points, got \(4, 2\)"):
        FaceTemplate("bad", 10, ((0, 0),) * 4, "nowhere")
    with pytest.raises(ValueError, match="weights"):
        FaceTemplate("bad", 10, ((1, 1),) * 5, "nowhere", weights=(1, 0, 0, 0, 0))
    assert set(TEMPLATES) == {"dlib-150", "arcface-112"}
    assert ARCFACE_112_TEMPLATE.to_dict()["points"][0] == [38.2946, 51.6963]


def test_templates_are_plausible_faces() -> None:
    for t in TEMPLATES.values():
        p = t.as_array()
        assert p[0, 0] < p[2, 0] < p[1, 0]  # left eye, nose, right eye from left to right
        assert p[0, 1] < p[2, 1] < p[3, 1]  # eyes above nose above mouth
        assert np.all((p > 0) & (p < t.size))


def test_align_face_puts_landmarks_on_template() -> None:
    # a synthetic image with a bright dot at each landmark: after alignment the dots sit on
    # the template points
    rng = np.random.default_rng(3)
    tmpl = DLIB_150_TEMPLATE
    to_image = _similarity(0.25, 1.4, 30.0, 20.0)
    landmarks = transform_points(to_image, tmpl.as_array())
    img = np.zeros((300, 300, 3), np.uint8)
    for x, y in np.round(landmarks).astype(int):
        img[y - 1 : y + 2, x - 1 : x + 2] = 255
    chip = align_face(img, landmarks + rng.normal(0, 0.1, landmarks.shape), tmpl)
    for x, y in tmpl.as_array():
        xi, yi = round(x), round(y)
        assert chip[yi - 1 : yi + 2, xi - 1 : xi + 2].max() > 100


# ---------------------------------------------------------------- real faces, dlib, MTCNN


def _load_script():
    spec = importlib.util.spec_from_file_location(
        "derive_dlib_template", REPO / "scripts" / "derive_dlib_template.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dlib_setup(lfw_dir):
    pytest.importorskip("dlib", reason="needs dlib-bin (dev extra)")
    pytest.importorskip("face_recognition_models")
    script = _load_script()
    from siamface.detect import MTCNN

    return script, script.DlibReference(), MTCNN(), lfw_dir


@pytest.mark.dlib
@pytest.mark.lfw
def test_warp_affine_matches_dlib_get_face_chip(dlib_setup) -> None:
    script, reference, _, lfw = dlib_setup
    face = reference.face(lfw / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")
    matrix = similarity_transform(reference.chip_corners(face), script.CHIP_CORNERS)
    ours = warp_affine(face.image, matrix, 150).astype(int)
    theirs = reference.chip(face).astype(int)
    assert np.abs(ours - theirs).mean() < 1.5


@pytest.mark.dlib
@pytest.mark.lfw
@pytest.mark.slow
def test_template_rederived_and_chip_corners_agree_with_dlib(dlib_setup) -> None:
    """A 60-face version of scripts/derive_dlib_template.py (400 faces to derive, 500 to check)."""
    script, reference, mtcnn, lfw = dlib_setup
    pool = script.lfw_sample(lfw, 200, seed=123)
    faces = script.collect_faces(reference, pool[:90], 60)
    points, used = script.derive_template(reference, mtcnn, faces)
    check = script.collect_faces(reference, pool[90:], 60)
    dist = script.corner_distances(reference, mtcnn, check, DLIB_150_TEMPLATE)
    assert used >= 55 and len(dist) >= 55
    err = np.hypot(*(points - DLIB_150_TEMPLATE.as_array()).T)
    weighted = np.asarray(DLIB_150_TEMPLATE.weights) > 0
    # the points the fit uses are stable to 1.5 px; the mouth (weight 0: it moves with
    # expression) varies more between samples of 60
    assert err[weighted].max() < 1.5, f"template drift per point {np.round(err, 2)}"
    assert err.max() < 4.0, f"template drift per point {np.round(err, 2)}"
    # where our chip's corners fall in the image vs dlib's chip (500 faces: 2.75 px)
    assert np.median(dist) <= 3.0


@pytest.mark.lfw
def test_aligned_chip_has_landmarks_where_template_says(lfw_dir) -> None:
    """Re-detected on our chips, MTCNN's landmarks sit near the template. MTCNN is not exactly
    equivariant (re-detection moves points by a few px, more with pose), so the check is on the
    median over 12 faces: on dlib's own chips the median distance is about 2 px for the eyes
    and 5 px for nose and mouth (scripts/derive_dlib_template.py, 400 faces)."""
    from siamface.detect import MTCNN
    from siamface.io import load_image

    mtcnn = MTCNN()
    tmpl = DLIB_150_TEMPLATE
    paths = _load_script().lfw_sample(lfw_dir, 12, seed=7)
    images = [load_image(p) for p in paths]
    chips = []
    for img, det in zip(images, mtcnn.detect_batch(images)):
        k = int(np.argmax(det.scores))
        chips.append(align_face(img, det.landmarks[k], tmpl))
    errors = []
    for det in mtcnn.detect_batch(chips):
        assert len(det.boxes) >= 1
        j = int(np.argmax(det.scores))
        errors.append(np.hypot(*(np.asarray(det.landmarks[j]) - tmpl.as_array()).T))
    median = np.median(errors, axis=0)
    # eyes and nose carry the fit; the mouth (weight 0) follows expression
    assert median[:2].max() < 4.0 and median[2] < 6.0 and median.max() < 10.0, np.round(median, 2)
