"""Albumentations (2.x) pipelines: the training augmentation and FACECOM-style distortions.

Distortions by name (``DISTORTIONS``), each imitating one FACECOM condition (the tag it is
stored under is ``siamface.data.DISTORTION_TAGS[kind]``):

============  ==========  ======================================================
kind          FACECOM     what it does
============  ==========  ======================================================
motion_blur   blurred     linear motion blur, kernel ~5-9 % of the image side
fog           foggy       albumentations RandomFog
rain          rainy       rain streaks, slightly darker
low_light     lowlight    darker, lower contrast, gamma, faint sensor noise
noise         noisy       strong gaussian noise
sun_glare     sunny       over-exposure plus a sun flare in the upper half
downscale     resized     down to 20-35 % then back up (lost detail)
============  ==========  ======================================================

``distort(image, kind, seed)`` is deterministic: the same image, kind and seed give the same
output. ``train_augmentation()`` is the random training pipeline (optionally mixing in the
distortions). Images are uint8 (H, W, 3) RGB numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import albumentations as A
import cv2
import numpy as np

from siamface.data.facecom import DISTORTION_TAGS
from siamface.errors import UnknownNameError

__all__ = [
    "DEFAULT_SEVERITY",
    "DISTORTIONS",
    "DISTORTION_TAGS",
    "SEVERITIES",
    "distort",
    "distortion_transform",
    "distortion_views",
    "train_augmentation",
]

DISTORTIONS: tuple[str, ...] = tuple(DISTORTION_TAGS)


def _odd(value: float, minimum: int = 3) -> int:
    n = max(minimum, round(value))
    return n if n % 2 else n + 1


SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
DEFAULT_SEVERITY = 3  # what ``distort`` wrote before severities existed, byte for byte

# Per kind and severity 1..5, the parameters of its transforms; severity 3 is the original
# (default) distortion. Each row is at least as strong as the one before, so a higher
# severity never changes an image less (tests/test_augment.py measures it). Severity 5 is
# well beyond anything the default model was made for: highlights blown out over most of the
# face, blur kernels of about a fifth of the face, near-black images, 8% of the resolution.
# Severity 4 is meant to be strong but restorable: MTCNN alone misses about 20% of LFW faces
# under its sun glare and 30% under its fog, and the detection retries find 99% or more of
# them (benchmarks/bench_detect_retries.py).
_MOTION_BLUR = ((0.02, 0.03), (0.03, 0.05), (0.05, 0.09), (0.10, 0.13), (0.14, 0.18))
_FOG = (((0.15, 0.25), 0.06), ((0.3, 0.5), 0.09), ((0.5, 0.8), 0.12), ((0.6, 0.85), 0.14),
        ((0.9, 1.0), 0.22))
# (rain type, drop length as a fraction of the side, width, brightness coefficient)
_RAIN = (("drizzle", 0.06, 1, 0.95), ("drizzle", 0.08, 1, 0.9), ("default", 0.1, 1, 0.85),
         ("default", 0.16, 1, 0.75), ("torrential", 0.2, 1, 0.7))
# (brightness range, contrast range, gamma range (x100), noise std range)
_LOW_LIGHT = (((-0.2, -0.1), (-0.1, 0.0), (100, 110), (0.01, 0.02)),
              ((-0.35, -0.25), (-0.2, -0.05), (110, 130), (0.015, 0.03)),
              ((-0.55, -0.4), (-0.3, -0.1), (120, 150), (0.02, 0.04)),
              ((-0.58, -0.48), (-0.33, -0.2), (130, 152), (0.022, 0.042)),
              ((-0.68, -0.6), (-0.45, -0.35), (155, 180), (0.03, 0.05)))
_NOISE = ((0.02, 0.04), (0.04, 0.08), (0.08, 0.16), (0.18, 0.24), (0.26, 0.34))
# (brightness range, contrast range, flare radius as a fraction of the side)
_SUN_GLARE = (((0.05, 0.1), (-0.1, 0.0), 0.3), ((0.15, 0.25), (-0.2, -0.05), 0.4),
              ((0.25, 0.4), (-0.3, -0.1), 0.45), ((0.6, 0.7), (-0.5, -0.4), 0.6),
              ((0.7, 0.8), (-0.5, -0.4), 0.65))
# (scale range, JPEG quality range after it or None)
_DOWNSCALE = (((0.6, 0.7), None), ((0.4, 0.5), None), ((0.2, 0.35), None),
              ((0.12, 0.16), (35, 45)), ((0.07, 0.09), (15, 25)))


def _motion_blur(side: int, level: int) -> list[A.BasicTransform]:
    lo, hi = _MOTION_BLUR[level - 1]
    return [A.MotionBlur(blur_limit=(_odd(lo * side), _odd(hi * side, 5)), p=1.0)]


def _fog(side: int, level: int) -> list[A.BasicTransform]:
    coef, alpha = _FOG[level - 1]
    return [A.RandomFog(fog_coef_range=coef, alpha_coef=alpha, p=1.0)]


def _rain(side: int, level: int) -> list[A.BasicTransform]:
    kind, length, width, brightness = _RAIN[level - 1]
    drop = max(4, side // 10) if level == DEFAULT_SEVERITY else max(4, round(length * side))
    return [A.RandomRain(slant_range=(-10, 10), drop_length=drop, drop_width=width,
                         blur_value=3, brightness_coefficient=brightness, rain_type=kind,
                         p=1.0)]


def _low_light(side: int, level: int) -> list[A.BasicTransform]:
    brightness, contrast, gamma, noise = _LOW_LIGHT[level - 1]
    return [
        A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast,
                                   brightness_by_max=False, p=1.0),
        A.RandomGamma(gamma_limit=gamma, p=1.0),
        A.GaussNoise(std_range=noise, p=1.0),
    ]


def _noise(side: int, level: int) -> list[A.BasicTransform]:
    return [A.GaussNoise(std_range=_NOISE[level - 1], p=1.0)]


def _sun_glare(side: int, level: int) -> list[A.BasicTransform]:
    brightness, contrast, radius = _SUN_GLARE[level - 1]
    return [
        A.RandomBrightnessContrast(brightness_limit=brightness, contrast_limit=contrast,
                                   p=1.0),
        A.RandomSunFlare(flare_roi=(0.0, 0.0, 1.0, 0.5), src_radius=max(8, int(radius * side)),
                         num_flare_circles_range=(3, 6), p=1.0),
    ]


def _downscale(side: int, level: int) -> list[A.BasicTransform]:
    scale, quality = _DOWNSCALE[level - 1]
    out: list[A.BasicTransform] = [
        A.Downscale(scale_range=scale, interpolation_pair={"downscale": cv2.INTER_AREA,
                                                           "upscale": cv2.INTER_LINEAR}, p=1.0)]
    if quality is not None:
        out.append(A.ImageCompression(quality_range=quality, p=1.0))
    return out


_BUILDERS: dict[str, Callable[[int, int], list[A.BasicTransform]]] = {
    "motion_blur": _motion_blur,
    "fog": _fog,
    "rain": _rain,
    "low_light": _low_light,
    "noise": _noise,
    "sun_glare": _sun_glare,
    "downscale": _downscale,
}


def _check_severity(severity: int) -> int:
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(map(str, SEVERITIES))}, got "
                         f"{severity!r}")
    return int(severity)


def _check_kind(kind: str) -> None:
    if kind not in _BUILDERS:
        raise UnknownNameError("distortion", kind, DISTORTIONS)


def distortion_transform(kind: str, image_size: int = 160, p: float = 1.0, *,
                         severity: int = DEFAULT_SEVERITY) -> A.BasicTransform:
    """The distortion ``kind`` at ``severity`` (1-5) as one albumentations transform (applied
    with probability ``p``), sized for images of about ``image_size`` pixels a side."""
    _check_kind(kind)
    return A.Sequential(_BUILDERS[kind](int(image_size), _check_severity(severity)), p=p)


def distort(image: np.ndarray, kind: str, seed: int = 0, *,
            severity: int = DEFAULT_SEVERITY) -> np.ndarray:
    """``image`` (uint8 H x W x 3 RGB) with distortion ``kind`` at ``severity`` (1 mild to 5
    extreme; 3, the default, is the original distortion); the same seed gives the same
    output. The input is not modified."""
    _check_kind(kind)
    level = _check_severity(severity)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"distort expects a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}"
        )
    side = min(image.shape[:2])
    pipeline = A.Compose(_BUILDERS[kind](side, level), seed=int(seed))
    return pipeline(image=np.ascontiguousarray(image))["image"]


def distortion_views(severities: Sequence[int] = (3, 4),
                     kinds: Sequence[str] = DISTORTIONS) -> Callable[[np.ndarray, int], np.ndarray]:
    """A view function ``view(chip, seed)`` for training on distorted faces: each call draws
    one kind of ``kinds`` and one severity of ``severities`` from ``seed``, distorts the chip
    with them (:func:`distort`) and mirrors it half of the time. Deterministic in ``seed``."""
    kinds = tuple(kinds)
    levels = tuple(_check_severity(s) for s in severities)
    if not kinds or not levels:
        raise ValueError("distortion_views needs at least one kind and one severity")
    for kind in kinds:
        _check_kind(kind)

    def view(chip: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(int(seed))
        kind = kinds[int(rng.integers(len(kinds)))]
        level = levels[int(rng.integers(len(levels)))]
        out = distort(chip, kind, seed=int(rng.integers(2**31)), severity=level)
        return np.ascontiguousarray(out[:, ::-1]) if rng.random() < 0.5 else out

    return view


def train_augmentation(
    *,
    image_size: int = 160,
    distortions: Sequence[str] = (),
    distortion_p: float = 0.0,
    seed: int | None = None,
) -> A.Compose:
    """The training augmentation: horizontal flip, brightness/contrast, motion or gaussian
    blur, gaussian noise, coarse dropout. With ``distortions`` (names from ``DISTORTIONS``)
    and ``distortion_p`` > 0, one of them is also applied with that probability. ``seed``
    makes the random sequence reproducible. Call as ``aug(image=rgb)["image"]``."""
    for kind in distortions:
        _check_kind(kind)
    transforms: list[A.BasicTransform] = [
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.OneOf([A.MotionBlur(blur_limit=(3, 7), p=1.0),
                 A.GaussianBlur(blur_limit=(3, 5), p=1.0)], p=0.2),
        A.GaussNoise(std_range=(0.02, 0.06), p=0.2),
        A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.08, 0.2),
                        hole_width_range=(0.08, 0.2), fill=0, p=0.3),
    ]
    if distortions and distortion_p > 0:
        transforms.append(A.OneOf(
            [distortion_transform(k, image_size) for k in distortions], p=distortion_p))
    return A.Compose(transforms, seed=seed)
