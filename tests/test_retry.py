"""Detection retries on restored copies (siamface.detect.restore, FacePipeline.retries)."""

from __future__ import annotations

import numpy as np
import pytest

from siamface.detect.cascade import Detections
from siamface.detect.restore import (
    DEBLUR_MAX_SIDE,
    DEFAULT_RETRIES,
    RETRIES,
    UPSCALE_MAX_SIDE,
    _blur_estimate,
    _line_kernel,
    clahe,
    deblur,
    dehaze,
    denoise,
    derain,
    exposure,
    restore,
    retry_scale,
    thick_fog,
    upscale,
)
from siamface.errors import ConfigError, UnknownNameError
from siamface.faces import FacePipeline


def _grey(image: np.ndarray) -> np.ndarray:
    return image.astype(float).mean(axis=2)


def _structured(low: float, high: float, size: int = 96) -> np.ndarray:
    """Smooth gradients and a disc, squeezed into the grey levels low..high."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = 0.5 * xx + 0.3 * yy
    base[(yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.06] = 0.9
    grey = low + (high - low) * base / base.max()
    return np.repeat(np.round(grey)[..., None], 3, axis=2).astype(np.uint8)


def test_clahe_stretches_a_low_contrast_image():
    foggy = _structured(150, 175, 256)
    out = clahe(foggy)
    assert out.shape == foggy.shape and out.dtype == np.uint8
    assert np.ptp(_grey(out)) > 1.3 * np.ptp(_grey(foggy))


@pytest.mark.parametrize(("low", "high"), [(215, 255), (0, 30)])
def test_exposure_brings_the_median_towards_the_middle(low, high):
    image = _structured(low, high, 256)
    before = abs(np.median(_grey(image)) - 127.5)
    after = abs(np.median(_grey(exposure(image))) - 127.5)
    assert after < 0.7 * before  # (gamma at most 4: a blown-out median of 236 goes to 197)


def test_denoise_removes_salt_and_pepper():
    rng = np.random.default_rng(0)
    clean = _structured(60, 200, 200)
    noisy = clean.copy()
    spots = rng.random(clean.shape[:2]) < 0.08
    noisy[spots] = rng.choice([0, 255], size=(int(spots.sum()), 1))
    error_before = np.abs(noisy.astype(float) - clean).mean()
    error_after = np.abs(denoise(noisy).astype(float) - clean).mean()
    assert error_after < error_before / 3


def test_dehaze_restores_contrast_under_white_haze():
    clear = _structured(20, 200, 256)
    hazy = np.round(0.35 * clear + 0.65 * 235).astype(np.uint8)
    out = dehaze(hazy)
    assert np.ptp(_grey(out)) > 2.5 * np.ptp(_grey(hazy))
    # on a grey image each pixel's haze is judged from itself: a tone curve that keeps the
    # order of the grey levels
    order = np.argsort(_grey(hazy).ravel(), kind="stable")
    assert (np.diff(_grey(out).ravel()[order]) >= 0).all()


def _coloured(size: int = 256) -> np.ndarray:
    """Smooth coloured gradients and a disc (skin-like hues), float RGB."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    base = 0.5 * xx + 0.3 * yy
    base[(yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.06] = 0.9
    base /= base.max()
    return np.stack([40 + 180 * base, 20 + 110 * base, 10 + 80 * base], axis=2)


def _white_haze(clear: np.ndarray, thickness: np.ndarray, white: float) -> np.ndarray:
    return np.round((1 - thickness) * clear + thickness * white).astype(np.uint8)


def test_dehaze_undoes_white_haze_that_varies_over_a_coloured_image():
    clear = _coloured()
    thickness = np.full((256, 256, 1), 0.5)
    thickness[:, 128:] = 0.75  # fog blotches: thicker on the right, thickest in a square
    thickness[60:120, 40:100] = 0.85
    hazy = _white_haze(clear, thickness, 235)
    error = np.abs(hazy - clear).mean()
    assert np.abs(dehaze(hazy) - clear).mean() < error / 3


def test_thick_fog_goes_further_than_one_dehaze():
    clear = _coloured()
    thickness = np.full((256, 256, 1), 0.93)
    thickness[:, 128:] = 0.97
    hazy = _white_haze(clear, thickness, 250)
    errors = [np.abs(image - clear).mean() for image in (hazy, dehaze(hazy), thick_fog(hazy))]
    assert errors[0] > 1.3 * errors[1] > 1.3 * 1.5 * errors[2]


@pytest.mark.parametrize(("length", "degrees"), [(21, 30), (31, 120), (15, 0)])
def test_deblur_measures_a_motion_blur_and_undoes_part_of_it(length, degrees):
    import cv2

    from siamface import examples
    from siamface.io import load_image

    sharp = cv2.resize(load_image(examples.path("astronaut.jpg")), (256, 256),
                       interpolation=cv2.INTER_AREA)
    kernel = np.roll(_line_kernel(length, np.deg2rad(degrees), (length + 2, length + 2)),
                     (length // 2 + 1, length // 2 + 1), (0, 1))
    blurred = cv2.filter2D(sharp, -1, kernel, borderType=cv2.BORDER_WRAP)
    found_length, found_angle = _blur_estimate(cv2.cvtColor(blurred, cv2.COLOR_RGB2GRAY))
    assert abs(found_length - length) <= 2
    off = abs(np.rad2deg(found_angle) - degrees) % 180
    assert min(off, 180 - off) <= 6
    restored = deblur(blurred)
    assert restored.shape == sharp.shape and restored.dtype == np.uint8
    assert np.abs(restored - sharp.astype(float)).mean() < 0.9 * np.abs(
        blurred - sharp.astype(float)).mean()
    assert deblur(np.zeros((DEBLUR_MAX_SIDE + 1, 60, 3), np.uint8)) is None
    assert deblur(np.zeros((47, 300, 3), np.uint8)) is None
    assert deblur(np.full((48, 300, 3), 7, np.uint8)).shape == (48, 300, 3)


def test_derain_removes_thin_bright_streaks():
    clean = _structured(40, 160, 250)
    rainy = clean.copy()
    rng = np.random.default_rng(1)
    for _ in range(60):  # one-pixel-wide bright streaks, 20 px long
        x, y = int(rng.integers(0, 249)), int(rng.integers(0, 230))
        for t in range(20):
            rainy[y + t, min(249, x + t // 6)] = 230
    error_before = np.abs(rainy.astype(float) - clean).mean()
    error_after = np.abs(derain(rainy).astype(float) - clean).mean()
    assert error_after < error_before / 2


def test_upscale_doubles_small_images_and_skips_large_ones():
    small = _structured(0, 255, 80)
    assert upscale(small).shape == (160, 160, 3) and retry_scale("upscale") == 2.0
    big = np.zeros((UPSCALE_MAX_SIDE + 1, 40, 3), np.uint8)
    assert upscale(big) is None and restore(big, "upscale") is None
    assert all(retry_scale(n) == 1.0 for n in RETRIES if n != "upscale")
    with pytest.raises(UnknownNameError, match="unknown detection retry 'sharpen'"):
        restore(small, "sharpen")


_FACE_LANDMARKS = ((70, 80), (130, 80), (100, 110), (76, 140), (124, 140))


class _FindsOnlyLargeImages:
    """A detector that finds one face (``box``, ``score``), only in images over 150 px: the
    first pass misses a 100 px image and the upscale retry finds it."""

    def __init__(self, box=(40, 40, 160, 170), score=0.99, landmarks=_FACE_LANDMARKS):
        self.calls: list[list[tuple[int, ...]]] = []
        self.face = Detections(np.array([box], np.float32), np.array([score], np.float32),
                               np.array([landmarks], np.float32))

    def detect_batch(self, images):
        self.calls.append([im.shape for im in images])
        return [self.face if im.shape[0] > 150 else Detections.empty() for im in images]


def test_a_face_found_on_a_restored_copy_is_mapped_back_and_named():
    detector = _FindsOnlyLargeImages()
    pipeline = FacePipeline(detector=detector, fallback_policy="always")
    image = _structured(30, 220, 100)
    crop = pipeline.crop(image)
    assert crop.detected and crop.detected_by == "upscale" and crop.fallback is None
    np.testing.assert_allclose(crop.box, (np.array([40, 40, 160, 170]) + 0.5) / 2 - 0.5)
    assert crop.landmarks[2].tolist() == [49.75, 54.75]  # the nose, in the 100 px image
    # the first pass, then every retry before upscale on the 100 px image, then the upscale
    assert list(DEFAULT_RETRIES)[-1] == "upscale"
    assert [c[0][0] for c in detector.calls] == [100] * len(DEFAULT_RETRIES) + [200]
    assert pipeline.params()["retries"] == list(DEFAULT_RETRIES)
    found = pipeline.crop(np.zeros((200, 200, 3), np.uint8) + 90)
    assert found.detected_by == "detector"


def test_retries_run_only_on_the_images_still_missing():
    detector = _FindsOnlyLargeImages()
    pipeline = FacePipeline(detector=detector, retries=("upscale",), fallback_policy="always")
    crops = pipeline.crop_batch([np.zeros((200, 200, 3), np.uint8) + 90,
                                 _structured(30, 220, 100), np.zeros((120, 120, 3), np.uint8)])
    assert [c.detected_by for c in crops] == ["detector", "upscale", "upscale"]
    assert detector.calls == [[(200, 200, 3), (100, 100, 3), (120, 120, 3)],
                              [(200, 200, 3), (240, 240, 3)]]


@pytest.mark.parametrize(("box", "score"), [((40, 40, 60, 60), 0.99), ((40, 40, 160, 170), 0.85)])
def test_a_retry_reports_no_small_or_weak_face(box, score):
    """Restored copies of non-faces give small, weak boxes: a retry keeps a face only with a
    score >= 0.9 and a box of 15% of the short side or more (the first pass keeps all)."""
    small = ((45, 45), (55, 45), (50, 50), (46, 55), (54, 55))
    detector = _FindsOnlyLargeImages(box, score, small if box[2] < 100 else _FACE_LANDMARKS)
    pipeline = FacePipeline(detector=detector, retries=("upscale",), fallback_policy="always")
    assert not pipeline.crop(_structured(30, 220, 100)).detected
    assert pipeline.crop(_structured(30, 220, 200)).detected_by == "detector"


def test_without_retries_nothing_changes():
    detector = _FindsOnlyLargeImages()
    pipeline = FacePipeline(detector=detector, retries=(), fallback_policy="always")
    crop = pipeline.crop(_structured(30, 220, 100))
    assert not crop.detected and crop.detected_by is None and crop.fallback == "center-crop"
    assert "retries" not in pipeline.params()  # the cache key of the pipeline before retries
    assert len(detector.calls) == 1
    with pytest.raises(UnknownNameError, match="detection retry"):
        FacePipeline(retries=("sharpen",))
    with pytest.raises(ConfigError, match="must not repeat"):
        FacePipeline(retries=("clahe", "clahe"))


def test_a_blown_out_lfw_photo_mtcnn_misses_is_found_by_a_retry(lfw_dir):
    from conftest import lfw_image
    from siamface.augment import distort
    from siamface.io import load_image
    from siamface.service import pipeline_for

    photo = load_image(lfw_image(lfw_dir, "Aaron_Sorkin", 2))
    blown = distort(photo, "sun_glare", seed=0, severity=5)
    bare = pipeline_for(retries=(), fallback_policy="always")
    assert bare.crop(blown).detected_by is None  # MTCNN alone finds nothing
    pipeline = pipeline_for(fallback_policy="always")
    pipeline._detector = bare.detector
    found, clean = pipeline.crop(blown), pipeline.crop(photo)
    assert found.detected and found.detected_by == "clahe" and clean.detected_by == "detector"
    x1, y1 = np.maximum(found.box[:2], clean.box[:2])
    x2, y2 = np.minimum(found.box[2:], clean.box[2:])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in (found.box, clean.box)]
    assert inter / (sum(areas) - inter) > 0.6  # the same face


def test_the_command_line_says_a_retry_found_the_face(lfw_dir, tmp_path, capsys):
    from PIL import Image

    from conftest import lfw_image
    from siamface.augment import distort
    from siamface.cli.main import main
    from siamface.io import load_image

    blown = tmp_path / "blown.png"
    Image.fromarray(distort(load_image(lfw_image(lfw_dir, "Aaron_Sorkin", 2)), "sun_glare",
                            seed=0, severity=5)).save(blown)
    assert main(["analyze", str(blown)]) == 0
    assert "(found on a restored copy: clahe)" in capsys.readouterr().out
    assert main(["analyze", str(blown), "--json"]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["faces"][0]["detected_by"] == "clahe"
    main(["analyze", str(blown), "--retries", "none"])  # without them: no face detected
    assert "no face detected" in capsys.readouterr().out
