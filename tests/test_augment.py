"""siamface.augment: deterministic distortions and the training pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from siamface import examples
from siamface.augment import (
    DEFAULT_SEVERITY,
    DISTORTION_TAGS,
    DISTORTIONS,
    SEVERITIES,
    distort,
    distortion_transform,
    distortion_views,
    train_augmentation,
)
from siamface.data import distortion_tag
from siamface.errors import UnknownNameError
from siamface.io import load_image


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A smooth, structured 96x96 RGB image (gradients and a bright disc)."""
    yy, xx = np.mgrid[0:96, 0:96]
    image = np.stack([xx * 2, yy * 2, (xx + yy)], axis=2).astype(np.float64)
    image[(yy - 48) ** 2 + (xx - 48) ** 2 < 400] = 200
    return np.clip(image + 20, 0, 255).astype(np.uint8)


def test_distortion_names_match_facecom_tags():
    assert set(DISTORTIONS) == {"motion_blur", "fog", "rain", "low_light", "noise",
                                "sun_glare", "downscale"}
    for kind in DISTORTIONS:
        assert distortion_tag(f"x_0001_{kind}.jpg") == DISTORTION_TAGS[kind]


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_distort_is_deterministic_and_changes_the_image(face, kind):
    before = face.copy()
    a = distort(face, kind, seed=11)
    b = distort(face, kind, seed=11)
    c = distort(face, kind, seed=12)
    assert np.array_equal(face, before)  # input untouched
    assert a.shape == face.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, face)
    if kind != "downscale":  # downscale's only randomness is the scale, may coincide
        assert not np.array_equal(a, c)


def test_distortions_do_what_their_names_say(face):
    gray = face.astype(float).mean()
    assert distort(face, "low_light", 0).astype(float).mean() < 0.6 * gray
    assert distort(face, "sun_glare", 0).astype(float).mean() > gray + 20
    noisy = distort(face, "noise", 0).astype(float) - face
    assert noisy.std() > 8
    blurred = distort(face, "downscale", 0).astype(float)
    edges = np.abs(np.diff(face.astype(float), axis=1)).max()
    assert np.abs(np.diff(blurred, axis=1)).max() < edges  # the disc edge is softened


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [load_image(examples.path(name)) for name in examples.names()]


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_a_higher_severity_never_changes_a_photo_less(photos, kind):
    """Mean absolute pixel change from the original, per photo and seed, rises with the
    severity; severity 3 is the default distortion."""
    assert SEVERITIES == (1, 2, 3, 4, 5) and DEFAULT_SEVERITY == 3
    for photo in photos:
        for seed in (0, 1, 2):
            change = [np.abs(distort(photo, kind, seed, severity=s).astype(float) - photo).mean()
                      for s in SEVERITIES]
            assert (np.diff(change) > 0).all(), (kind, seed, change)
            assert np.array_equal(distort(photo, kind, seed),
                                  distort(photo, kind, seed, severity=DEFAULT_SEVERITY))


def test_distort_rejects_bad_input(face):
    with pytest.raises(UnknownNameError, match="valid: motion_blur, fog"):
        distort(face, "snow")
    with pytest.raises(ValueError, match="uint8"):
        distort(face.astype(np.float32), "fog")
    with pytest.raises(UnknownNameError, match="unknown distortion 'hail'; valid: motion_blur"):
        distortion_transform("hail")
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="severity must be one of 1, 2, 3, 4, 5"):
            distort(face, "fog", severity=bad)


def test_train_augmentation_seeded_and_shape_preserving(face):
    outputs = []
    for _ in range(2):
        aug = train_augmentation(seed=1, distortions=("fog", "noise"), distortion_p=0.5)
        outputs.append([aug(image=face)["image"] for _ in range(10)])
    assert all(np.array_equal(x, y) for x, y in zip(*outputs))
    assert all(o.shape == face.shape and o.dtype == np.uint8 for o in outputs[0])
    assert any(not np.array_equal(o, face) for o in outputs[0])
    names = [type(t).__name__ for t in train_augmentation().transforms]
    assert names[:5] == ["HorizontalFlip", "RandomBrightnessContrast", "OneOf", "GaussNoise",
                         "CoarseDropout"]
    with pytest.raises(UnknownNameError, match="unknown distortion 'snow'; valid: motion_blur"):
        train_augmentation(distortions=("snow",), distortion_p=0.5)


def test_distortion_views_are_seeded_apply_the_severity_and_mirror_half(face):
    view = distortion_views((4,), kinds=("fog", "noise"))
    outputs = [view(face, seed) for seed in range(12)]
    assert all(np.array_equal(o, view(face, seed)) for seed, o in enumerate(outputs))
    assert all(o.shape == face.shape and o.dtype == np.uint8 for o in outputs)
    assert len({o.tobytes() for o in outputs}) == len(outputs)

    def change(severity: int) -> float:
        noisy = distortion_views((severity,), kinds=("noise",))
        return float(np.mean([min(np.abs(noisy(face, s) - face.astype(float)).mean(),
                                  np.abs(noisy(face, s) - face[:, ::-1].astype(float)).mean())
                              for s in range(8)]))

    assert change(5) > 2 * change(1)
    mild = distortion_views((1,), kinds=("noise",))
    mirrored = [np.abs(mild(face, s) - face[:, ::-1].astype(float)).mean()
                < np.abs(mild(face, s) - face.astype(float)).mean() for s in range(40)]
    assert 10 <= sum(mirrored) <= 30
    with pytest.raises(ValueError, match="severity must be one of"):
        distortion_views((6,))
    with pytest.raises(UnknownNameError, match="unknown distortion 'snow'"):
        distortion_views(kinds=("snow",))
    with pytest.raises(ValueError, match="at least one kind"):
        distortion_views(())
