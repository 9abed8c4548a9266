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
    "DISTORTIONS",
    "DISTORTION_TAGS",
    "distort",
    "distortion_transform",
    "train_augmentation",
]

DISTORTIONS: tuple[str, ...] = tuple(DISTORTION_TAGS)


def _odd(value: float, minimum: int = 3) -> int:
    n = max(minimum, round(value))
    return n if n % 2 else n + 1


def _motion_blur(side: int) -> list[A.BasicTransform]:
    return [A.MotionBlur(blur_limit=(_odd(0.05 * side), _odd(0.09 * side, 5)), p=1.0)]


def _fog(side: int) -> list[A.BasicTransform]:
    return [A.RandomFog(fog_coef_range=(0.5, 0.8), alpha_coef=0.12, p=1.0)]


def _rain(side: int) -> list[A.BasicTransform]:
    return [A.RandomRain(slant_range=(-10, 10), drop_length=max(4, side // 10), drop_width=1,
                         blur_value=3, brightness_coefficient=0.85, p=1.0)]


def _low_light(side: int) -> list[A.BasicTransform]:
    return [
        A.RandomBrightnessContrast(brightness_limit=(-0.55, -0.4), contrast_limit=(-0.3, -0.1),
                                   brightness_by_max=False, p=1.0),
        A.RandomGamma(gamma_limit=(120, 150), p=1.0),
        A.GaussNoise(std_range=(0.02, 0.04), p=1.0),
    ]


def _noise(side: int) -> list[A.BasicTransform]:
    return [A.GaussNoise(std_range=(0.08, 0.16), p=1.0)]


def _sun_glare(side: int) -> list[A.BasicTransform]:
    return [
        A.RandomBrightnessContrast(brightness_limit=(0.25, 0.4), contrast_limit=(-0.3, -0.1),
                                   p=1.0),
        A.RandomSunFlare(flare_roi=(0.0, 0.0, 1.0, 0.5), src_radius=max(8, int(0.45 * side)),
                         num_flare_circles_range=(3, 6), p=1.0),
    ]


def _downscale(side: int) -> list[A.BasicTransform]:
    return [A.Downscale(scale_range=(0.2, 0.35),
                        interpolation_pair={"downscale": cv2.INTER_AREA,
                                            "upscale": cv2.INTER_LINEAR}, p=1.0)]


_BUILDERS: dict[str, Callable[[int], list[A.BasicTransform]]] = {
    "motion_blur": _motion_blur,
    "fog": _fog,
    "rain": _rain,
    "low_light": _low_light,
    "noise": _noise,
    "sun_glare": _sun_glare,
    "downscale": _downscale,
}


def _check_kind(kind: str) -> None:
    if kind not in _BUILDERS:
        raise UnknownNameError("distortion", kind, DISTORTIONS)


def distortion_transform(kind: str, image_size: int = 160, p: float = 1.0) -> A.BasicTransform:
    """The distortion ``kind`` as one albumentations transform (applied with probability
    ``p``), sized for images of about ``image_size`` pixels a side."""
    _check_kind(kind)
    return A.Sequential(_BUILDERS[kind](int(image_size)), p=p)


def distort(image: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """``image`` (uint8 H x W x 3 RGB) with distortion ``kind``; the same seed gives the same
    output. The input is not modified."""
    _check_kind(kind)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"distort expects a uint8 (H, W, 3) RGB image, got {image.dtype} {image.shape}"
        )
    side = min(image.shape[:2])
    pipeline = A.Compose(_BUILDERS[kind](side), seed=int(seed))
    return pipeline(image=np.ascontiguousarray(image))["image"]


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
