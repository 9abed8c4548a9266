"""Chip restorations (siamface.chip_restore): the noise gate, the pipeline's restored chips,
the service's report of them and the trainer's restored views."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from siamface import examples
from siamface.chip_restore import (
    DENOISE_BLUR_PER_LEVEL,
    DENOISE_BLUR_RANGE,
    NOISE_GATE,
    RAIN_GATE,
    EmbeddingGate,
    apply_gates,
    check_chip_restore,
    denoise_chip,
    fit_dehaze_gate,
    gates_from_preprocessing,
    noise_sigma,
    rain_streaks,
    restore_chip,
)
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


@pytest.mark.parametrize("sigma, width", [(10.0, 1.5), (26.0, 2.0), (60.0, 3.0)])
def test_denoising_blur_width_follows_the_noise_estimate(sigma, width):
    # 1/13 px per grey level, clipped to 1.5-3 px: known answers below, at and above the range
    assert DENOISE_BLUR_PER_LEVEL == pytest.approx(1 / 13) and DENOISE_BLUR_RANGE == (1.5, 3.0)
    noisy = _noisy(_smooth_chip(), sigma, seed=1)
    np.testing.assert_array_equal(denoise_chip(noisy, sigma),
                                  cv2.GaussianBlur(noisy, (0, 0), width))


def test_denoising_removes_noise_and_widens_for_heavy_noise():
    clean = _smooth_chip()
    error = lambda chip: np.abs(chip.astype(float) - clean).mean()
    for sigma in (12.0, 30.0, 60.0):
        noisy = _noisy(clean, sigma, seed=1)
        assert error(denoise_chip(noisy, noise_sigma(noisy))) < 0.5 * error(noisy)
    # under heavy noise the wider blur the estimate asks for beats the narrowest one
    heavy = _noisy(clean, 60.0, seed=1)
    assert (error(denoise_chip(heavy, noise_sigma(heavy)))
            < error(cv2.GaussianBlur(heavy, (0, 0), DENOISE_BLUR_RANGE[0])))


def _streaks(image: np.ndarray, angle: float, seed: int = 0) -> np.ndarray:
    """``image`` with 60 bright streaks 1 px wide and 25 px long at ``angle`` degrees from the
    vertical."""
    rng = np.random.default_rng(seed)
    out = image.copy()
    dx, dy = 12.5 * np.sin(np.deg2rad(angle)), 12.5 * np.cos(np.deg2rad(angle))
    for x, y in rng.uniform(20, 130, (60, 2)):
        cv2.line(out, (round(x - dx), round(y - dy)), (round(x + dx), round(y + dy)),
                 (235, 235, 235), 1)
    return out


def test_rain_gate_fires_on_falling_streaks_only():
    clean = _smooth_chip()
    assert rain_streaks(clean) == 0.0
    assert restore_chip(clean, ("derain",)) == (clean, None)
    for angle in (0.0, 8.0):  # rain falls: vertical or a little slanted
        rainy = _streaks(clean, angle)
        assert rain_streaks(rainy) > RAIN_GATE
        out, by = restore_chip(rainy, ("derain",))
        assert by == "derain"
        error = lambda chip: np.abs(chip.astype(float) - clean).mean()
        assert error(out) < 0.3 * error(rainy)
    # the same streaks lying across (as thin horizontal details of a face do) do not fire it
    across = _streaks(clean, 90.0)
    assert rain_streaks(across) < 0 and restore_chip(across, ("derain",)) == (across, None)
    # the restorations are tried in order and the first that fires is the one applied
    noisy_rain = _noisy(_streaks(clean, 0.0), 25.0)
    assert restore_chip(noisy_rain, ("denoise", "derain"))[1] == "denoise"
    assert restore_chip(noisy_rain, ("derain", "denoise"))[1] == "derain"


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
    assert restoring.chip_restore == ("denoise", "derain")
    clean_crop = restoring.crop(photo)
    assert clean_crop.detected and clean_crop.restored is None
    crop, bare = restoring.crop(noisy), plain.crop(noisy)
    assert crop.detected and bare.detected and bare.restored is None
    assert crop.restored == "denoise"
    # the chip is cut from the noisy photo, then filtered (the box is the same detection)
    np.testing.assert_array_equal(crop.box, bare.box)
    np.testing.assert_array_equal(crop.chip, denoise_chip(bare.chip, noise_sigma(bare.chip)))
    # the restoration is part of what the chips' cache keys describe, absent when off
    assert restoring.params()["chip_restore"] == ["denoise", "derain"]
    assert "chip_restore" not in plain.params()


@pytest.mark.parametrize("name", ["kofi_annan_1", "kofi_annan_2"])
def test_pipeline_derains_a_rainy_face(name):
    from siamface.augment import distort

    photo = load_image(examples.path(name))
    rainy = distort(photo, "rain", seed=0, severity=4)
    restoring, plain = FacePipeline(), FacePipeline(chip_restore=())
    assert restoring.crop(photo).restored is None
    crop, bare = restoring.crop(rainy), plain.crop(rainy)
    assert crop.detected and crop.restored == "derain" and rain_streaks(bare.chip) > RAIN_GATE
    from siamface.detect.restore import derain

    np.testing.assert_array_equal(crop.chip, derain(bare.chip))


def test_center_crops_are_restored_too():
    noisy = _noisy(load_image(examples.path("kofi_annan_1")), 30.0, seed=4)
    crop = FacePipeline(crop="center", fallback_policy="always").crop(noisy)
    assert not crop.detected and crop.restored == "denoise"


def test_service_reports_the_restoration():
    import siamface

    service = siamface.load()
    assert service.pipeline.chip_restore == ("denoise", "derain")  # as its checkpoint records
    photo = load_image(examples.path("kofi_annan_2"))
    clean, noisy = service.faces([photo, _noisy(photo, 30.0, seed=5)])
    # the fog gate may fire on the denoised chip as well; the result then names both, in order
    assert clean.restored is None and noisy.restored in ("denoise", "denoise+dehaze")
    assert noisy.to_dict()["restored"] == noisy.restored and clean.to_dict()["restored"] is None
    denoised = service.pipeline.crop(_noisy(photo, 30.0, seed=5)).chip
    gated = service._embed_chips(np.stack([denoised]))[3][0]
    assert noisy.restored == ("denoise+dehaze" if gated == "dehaze" else "denoise")


def test_trainer_views_are_restored_like_the_chips():
    from siamface.train.config import TrainConfig, config_from_dict
    from siamface.train.run import restored_views

    clean = _smooth_chip()

    def view(chip, seed):
        return _noisy(chip, 25.0, seed)

    on = restored_views(view, TrainConfig())
    noisy = view(clean, 7)
    np.testing.assert_array_equal(on(clean, 7), denoise_chip(noisy, noise_sigma(noisy)))
    off = restored_views(view, config_from_dict({"data": {"chip_restore": []}}))
    np.testing.assert_array_equal(off(clean, 7), view(clean, 7))
    with pytest.raises(UnknownNameError, match="chip restoration"):
        config_from_dict({"data": {"chip_restore": ["sharpen"]}})


def _gate(cutoff: float = 0.5, restore: str = "dehaze") -> EmbeddingGate:
    return EmbeddingGate(restore, np.array([1.0, 0.0, 0.0]), 0.0, cutoff)


def test_embedding_gate_round_trip_and_validation():
    gate = _gate(0.25)
    back = EmbeddingGate.from_dict(gate.to_dict(), embedding_dim=3)
    assert back.restore == "dehaze" and back.cutoff == 0.25 and back.bias == 0.0
    np.testing.assert_array_equal(back.weight, gate.weight)
    np.testing.assert_allclose(back.scores(np.eye(3)), [1.0, 0.0, 0.0])
    with pytest.raises(UnknownNameError, match="'sharpen'"):
        EmbeddingGate.from_dict({**gate.to_dict(), "restore": "sharpen"})
    with pytest.raises(ValueError, match="2 values for 3-d"):
        EmbeddingGate.from_dict({**gate.to_dict(), "weight": [1.0, 2.0]}, embedding_dim=3)
    with pytest.raises(ValueError, match="finite"):
        EmbeddingGate.from_dict({**gate.to_dict(), "cutoff": float("nan")})
    with pytest.raises(TypeError, match="must be a list"):
        gates_from_preprocessing({"embedding_gates": gate.to_dict()})
    assert gates_from_preprocessing({}) == ()


def test_gated_faces_are_restored_and_embedded_again():
    hazy = np.full((3, 8, 8, 3), 200, np.uint8)
    hazy[:, 2:6, 2:6] = 150  # a low-contrast patch: dehazing stretches it
    calls = []

    def embed(chips):
        calls.append(len(chips))
        return np.full((len(chips), 3), 9.0), np.full((len(chips), 2), 7.0)

    emb = np.array([[0.9, 0, 0], [0.1, 0, 0], [0.8, 0, 0]])
    logits = np.zeros((3, 2))
    chips, out, out_logits, restored = apply_gates(embed, hazy, emb, logits, [_gate()],
                                                   restored=[None, None, "denoise"])
    # face 0 passes the gate; face 1 does not; face 2 was restored already (denoised)
    assert restored == ["dehaze", None, "denoise"] and calls == [1]
    np.testing.assert_array_equal(out[0], [9.0, 9.0, 9.0])
    np.testing.assert_array_equal(out[1:], emb[1:])
    np.testing.assert_array_equal(out_logits[1:], logits[1:])
    assert not np.array_equal(chips[0], hazy[0]) and np.array_equal(chips[1:], hazy[1:])
    none = apply_gates(embed, hazy, emb, logits, [_gate(cutoff=5.0)])
    assert none[3] == [None, None, None] and calls == [1]


def test_a_fog_gate_fitted_on_lfw_faces_flags_fog_not_clean_faces(lfw_dir):
    """Fitted on 80 LFW people's faces and measured on 40 others (shipped model)."""
    import siamface
    from siamface.augment import distort
    from siamface.data import load_lfw

    service = siamface.load()
    people = {}
    for record in load_lfw(lfw_dir):
        people.setdefault(record.person_id, record.path)
    paths = [people[name] for name in sorted(people)[:120]]
    crops = service.pipeline.crop_batch([load_image(p) for p in paths])
    chips = np.stack([c.chip for c in crops if c.detected])
    assert len(chips) >= 110

    def embed(batch):
        return service._run_chips(batch)[0]

    gate = fit_dehaze_gate(embed, chips[:80], seed=1)
    test = chips[80:]
    fogged = np.stack([distort(c, "fog", seed=i, severity=4) for i, c in enumerate(test)])
    fired_clean = np.mean(gate.scores(embed(test)) > gate.cutoff)
    fired_fog = np.mean(gate.scores(embed(fogged)) > gate.cutoff)
    assert fired_clean <= 0.1 and fired_fog >= 0.6, (fired_clean, fired_fog)
    with pytest.raises(ValueError, match="at least 50 faces"):
        fit_dehaze_gate(embed, chips[:10])


def test_the_shipped_model_dehazes_a_fogged_face():
    import siamface
    from siamface.augment import distort

    service = siamface.load()
    assert [g.restore for g in service.gates] == ["dehaze"]
    photo = load_image(examples.path("kofi_annan_1"))
    clean, fogged = service.faces([photo, distort(photo, "fog", seed=0, severity=4)])
    assert clean.restored is None and fogged.restored == "dehaze"
    # the verdict is reached on the dehazed face's embedding: the pair still matches
    assert service.verify(photo, distort(photo, "fog", seed=0, severity=4)).is_match
