"""Chip restorations (siamface.chip_restore): the noise gate, the pipeline's restored chips,
the service's report of them and the trainer's restored views."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from siamface import examples
from siamface.chip_restore import NOISE_GATE, check_chip_restore, noise_sigma, restore_chip
from siamface.errors import ConfigError, UnknownNameError
from siamface.faces import FacePipeline
from siamface.io import load_image


def _smooth_chip(size: int = 150) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    grey = 60 + 120 * (0.6 * xx + 0.4 * yy)
    grey[(yy - 0.5) ** 2 + (xx - 0.5) ** 2 < 0.05] = 200
    grey = cv2.GaussianBlur(grey, (0, 0), 2)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def _noisy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, sigma, image.shape[:2])[..., None]  # grey noise: sigma in grey levels
    return np.clip(image.astype(float) + noise, 0, 255).round().astype(np.uint8)


@pytest.mark.parametrize("sigma", [5.0, 12.0, 25.0])
def test_noise_estimate_measures_added_noise(sigma):
    assert noise_sigma(_smooth_chip()) < 0.5
    assert noise_sigma(_noisy(_smooth_chip(), sigma)) == pytest.approx(sigma, rel=0.15)


def test_restoration_fires_only_above_the_gate():
    clean = _smooth_chip()
    out, by = restore_chip(clean, ("denoise",))
    assert by is None and out is clean
    below = _noisy(clean, NOISE_GATE * 0.6)
    assert restore_chip(below, ("denoise",)) == (below, None)
    noisy = _noisy(clean, 25.0)
    out, by = restore_chip(noisy, ("denoise",))
    assert by == "denoise" and out.shape == noisy.shape and out.dtype == np.uint8
    error = lambda chip: np.abs(chip.astype(float) - clean).mean()
    assert error(out) < 0.6 * error(noisy)
    assert restore_chip(noisy, ()) == (noisy, None)


def test_restoration_names_are_checked():
    assert check_chip_restore(["denoise"]) == ("denoise",)
    with pytest.raises(UnknownNameError, match="unknown chip restoration 'denoize'.*denoise"):
        check_chip_restore(["denoize"])
    with pytest.raises(ConfigError, match="must not repeat"):
        check_chip_restore(["denoise", "denoise"])
    with pytest.raises(UnknownNameError):
        FacePipeline(chip_restore=["sharpen"])


def test_pipeline_restores_a_noisy_face_after_alignment():
    photo = load_image(examples.path("kofi_annan_1"))
    noisy = _noisy(photo, 30.0, seed=3)
    restoring, plain = FacePipeline(), FacePipeline(chip_restore=())
    assert restoring.chip_restore == ("denoise",)
    clean_crop = restoring.crop(photo)
    assert clean_crop.detected and clean_crop.restored is None
    crop, bare = restoring.crop(noisy), plain.crop(noisy)
    assert crop.detected and bare.detected and bare.restored is None
    assert crop.restored == "denoise"
    # the chip is cut from the noisy photo, then filtered (the box is the same detection)
    np.testing.assert_array_equal(crop.box, bare.box)
    np.testing.assert_array_equal(crop.chip, cv2.medianBlur(bare.chip, 3))
    # the restoration is part of what the chips' cache keys describe, absent when off
    assert restoring.params()["chip_restore"] == ["denoise"]
    assert "chip_restore" not in plain.params()


def test_center_crops_are_restored_too():
    noisy = _noisy(load_image(examples.path("kofi_annan_1")), 30.0, seed=4)
    crop = FacePipeline(crop="center", fallback_policy="always").crop(noisy)
    assert not crop.detected and crop.restored == "denoise"


def test_service_reports_the_restoration():
    import siamface

    service = siamface.load()
    assert service.pipeline.chip_restore == ("denoise",)  # the default for a checkpoint without
    photo = load_image(examples.path("kofi_annan_2"))
    clean, noisy = service.faces([photo, _noisy(photo, 30.0, seed=5)])
    assert clean.restored is None and noisy.restored == "denoise"
    assert noisy.to_dict()["restored"] == "denoise" and clean.to_dict()["restored"] is None


def test_trainer_views_are_restored_like_the_chips():
    from siamface.train.config import TrainConfig, config_from_dict
    from siamface.train.run import restored_views

    clean = _smooth_chip()

    def view(chip, seed):
        return _noisy(chip, 25.0, seed)

    on = restored_views(view, TrainConfig())
    np.testing.assert_array_equal(on(clean, 7), cv2.medianBlur(view(clean, 7), 3))
    off = restored_views(view, config_from_dict({"data": {"chip_restore": []}}))
    np.testing.assert_array_equal(off(clean, 7), view(clean, 7))
    with pytest.raises(UnknownNameError, match="chip restoration"):
        config_from_dict({"data": {"chip_restore": ["sharpen"]}})
