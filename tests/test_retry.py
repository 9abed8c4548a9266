"""Detection retries on restored copies (siamface.detect.restore, FacePipeline.retries)."""

from __future__ import annotations

import numpy as np
import pytest

from siamface.detect.cascade import Detections
from siamface.detect.restore import (
    DEFAULT_RETRIES,
    RETRIES,
    UPSCALE_MAX_SIDE,
    clahe,
    denoise,
    exposure,
    restore,
    retry_scale,
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


def test_upscale_doubles_small_images_and_skips_large_ones():
    small = _structured(0, 255, 80)
    assert upscale(small).shape == (160, 160, 3) and retry_scale("upscale") == 2.0
    big = np.zeros((UPSCALE_MAX_SIDE + 1, 40, 3), np.uint8)
    assert upscale(big) is None and restore(big, "upscale") is None
    assert all(retry_scale(n) == 1.0 for n in RETRIES if n != "upscale")
    with pytest.raises(UnknownNameError, match="unknown detection retry 'sharpen'"):
        restore(small, "sharpen")


class _FindsOnlyLargeImages:
    """A detector that finds one face, at a known place, only in images over 150 px: the
    first pass misses a 100 px image and the upscale retry finds it."""

    def __init__(self):
        self.calls: list[list[tuple[int, ...]]] = []

    def detect_batch(self, images):
        self.calls.append([im.shape for im in images])
        out = []
        for im in images:
            if im.shape[0] <= 150:
                out.append(Detections.empty())
                continue
            landmarks = np.array([[[70, 80], [130, 80], [100, 110], [76, 140], [124, 140]]],
                                 np.float32)
            out.append(Detections(np.array([[40, 40, 160, 170]], np.float32),
                                  np.array([0.99], np.float32), landmarks))
        return out


def test_a_face_found_on_a_restored_copy_is_mapped_back_and_named():
    detector = _FindsOnlyLargeImages()
    pipeline = FacePipeline(detector=detector, fallback_policy="always")
    image = _structured(30, 220, 100)
    crop = pipeline.crop(image)
    assert crop.detected and crop.detected_by == "upscale" and crop.fallback is None
    np.testing.assert_allclose(crop.box, (np.array([40, 40, 160, 170]) + 0.5) / 2 - 0.5)
    assert crop.landmarks[2].tolist() == [49.75, 54.75]  # the nose, in the 100 px image
    # the first pass, then clahe, exposure, denoise on the 100 px image, then the upscale
    assert [c[0][0] for c in detector.calls] == [100, 100, 100, 100, 200]
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
