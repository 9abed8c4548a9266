"""Restored copies of an image for a second detection attempt (numpy and OpenCV, no torch).

When the detector finds no face, :class:`siamface.faces.FacePipeline` retries on copies of the
image that undo what commonly hides a face from MTCNN, in the order of ``DEFAULT_RETRIES``,
stopping at the first copy in which a face is found (the result's ``detected_by`` names it):

============  ===============================================================================
retry         what it does
============  ===============================================================================
clahe         local contrast equalisation (CLAHE) of the lightness: fog, haze, flat light
exposure      a gamma that brings the median lightness to the middle, then CLAHE: over- and
              under-exposure, glare, near-black low light
dehaze        the dark channel prior's haze removal (one-pixel patches): fog
thick_fog     dehaze twice, then a mild CLAHE: fog too thick for one pass
denoise       a median filter over about 1.5% of the short side: noise
derain        a grey opening over 2% of the short side: bright streaks (rain)
deblur        Wiener deconvolution with a line kernel measured from the cepstrum: motion blur
upscale       twice the size (cubic): small or down-scaled faces below MTCNN's 20 px windows
============  ===============================================================================

Each function takes and returns uint8 (H, W, 3) RGB; only ``upscale`` changes the size, by
:data:`UPSCALE` (detections on it are mapped back), and it skips images larger than
:data:`UPSCALE_MAX_SIDE` (returns None). The chip is always cut from the original
image: restorations only help to find the face. A face found on a copy counts only if it is
plausible (score and size: ``siamface.faces.RETRY_MIN_SCORE`` / ``RETRY_MIN_SIZE``), since
restored noise and photo crops give small, weak "faces".
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from siamface.errors import UnknownNameError

__all__ = ["DEFAULT_RETRIES", "RETRIES", "UPSCALE", "UPSCALE_MAX_SIDE", "VERSION", "restore",
           "retry_scale"]

# Raise with any change that can change a restored copy: it goes into the crop cache's key.
# 2: dehaze per pixel without CLAHE, thick_fog and deblur
VERSION = 2
UPSCALE = 2.0
UPSCALE_MAX_SIDE = 512
DEBLUR_MAX_SIDE = 1024
_CLAHE_CLIP = 3.0
_CLAHE_TILES = 8


def _lightness_clahe(image: np.ndarray, clip: float = _CLAHE_CLIP) -> np.ndarray:
    lab = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2LAB)
    # tiles of at least 32 px: on smaller ones the clip limit rounds to one pixel per bin
    tiles = int(np.clip(min(image.shape[:2]) // 32, 1, _CLAHE_TILES))
    tool = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles))
    lab[..., 0] = tool.apply(np.ascontiguousarray(lab[..., 0]))
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def clahe(image: np.ndarray) -> np.ndarray:
    """CLAHE on the L channel of Lab (clip limit 3, up to 8x8 tiles of 32 px or more)."""
    return _lightness_clahe(image)


def exposure(image: np.ndarray) -> np.ndarray:
    """Gamma correction of the median lightness to 0.5 (gamma within 1/4..4), then CLAHE."""
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    median = float(np.clip(np.median(grey) / 255.0, 1 / 255, 254 / 255))
    gamma = float(np.clip(np.log(0.5) / np.log(median), 0.25, 4.0))
    table = np.clip(np.round(255.0 * (np.arange(256) / 255.0) ** gamma), 0, 255)
    return _lightness_clahe(cv2.LUT(np.ascontiguousarray(image), table.astype(np.uint8)))


def denoise(image: np.ndarray) -> np.ndarray:
    """A median filter of odd size about 1.5% of the short side (at least 3)."""
    k = max(3, round(0.015 * min(image.shape[:2])))
    k += 1 - k % 2
    return cv2.medianBlur(np.ascontiguousarray(image), min(k, 7))


def _odd_size(image: np.ndarray, fraction: float, smallest: int = 3) -> int:
    k = max(smallest, round(fraction * min(image.shape[:2])))
    return k + 1 - k % 2


def dehaze(image: np.ndarray) -> np.ndarray:
    """Haze removal by the dark channel prior (He, Sun and Tang 2009) with one-pixel patches:
    the haze's colour from the brightest 0.1% of the dark channel, its thickness at each
    pixel from the image divided by that colour, no smoothing and no CLAHE after. Fog that
    varies over the face (blotches) is undone where it lies; patches of 1-3% of the side and
    CLAHE after found fewer fogged faces (benchmarks/bench_detect_retries.py)."""
    rgb = np.ascontiguousarray(image).astype(np.float32) / 255.0
    dark = rgb.min(axis=2)
    n = max(1, dark.size // 1000)
    brightest = np.argpartition(dark.ravel(), -n)[-n:]
    haze = np.maximum(rgb.reshape(-1, 3)[brightest].mean(axis=0), 0.3)
    transmission = 1.0 - 0.95 * (rgb / haze).min(axis=2)
    clear = (rgb - haze) / np.maximum(transmission, 0.1)[..., None] + haze
    return np.clip(np.round(clear * 255.0), 0, 255).astype(np.uint8)


def thick_fog(image: np.ndarray) -> np.ndarray:
    """:func:`dehaze` twice, for fog too thick for one pass, then a mild CLAHE (clip 2)."""
    return _lightness_clahe(dehaze(dehaze(image)), clip=2.0)


def derain(image: np.ndarray) -> np.ndarray:
    """A grey opening (erosion then dilation) over 2% of the short side: removes bright
    streaks thinner than that (rain), keeps larger shapes."""
    k = _odd_size(image, 0.02)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    return cv2.morphologyEx(np.ascontiguousarray(image), cv2.MORPH_OPEN, kernel)


def _blur_estimate(grey: np.ndarray) -> tuple[int, float]:
    """(length, angle) of a linear motion blur from the power cepstrum: a line kernel of
    length L puts a negative peak at distance L along its direction."""
    g = grey.astype(np.float32) - float(grey.mean())
    g *= np.outer(np.hanning(g.shape[0]), np.hanning(g.shape[1])).astype(np.float32)
    cepstrum = np.fft.fftshift(np.real(np.fft.ifft2(np.log(np.abs(np.fft.fft2(g)) + 1e-3))))
    cy, cx = cepstrum.shape[0] // 2, cepstrum.shape[1] // 2
    lengths = np.arange(5, min(g.shape) // 4)
    angles = np.deg2rad(np.arange(0, 180, 3))
    ys = np.rint(cy + lengths[:, None] * np.sin(angles)[None]).astype(int)
    xs = np.rint(cx + lengths[:, None] * np.cos(angles)[None]).astype(int)
    li, ai = np.unravel_index(np.argmin(cepstrum[ys, xs]), ys.shape)
    return int(lengths[li]), float(angles[ai])


def _line_kernel(length: int, angle: float, shape: tuple[int, int]) -> np.ndarray:
    kernel = np.zeros(shape, np.float32)
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 2 * length)
    ys = np.rint(t * np.sin(angle)).astype(int) % shape[0]
    xs = np.rint(t * np.cos(angle)).astype(int) % shape[1]
    kernel[ys, xs] = 1.0
    return kernel / kernel.sum()


def deblur(image: np.ndarray) -> np.ndarray | None:
    """Wiener deconvolution (noise-to-signal 0.01) with a line kernel whose length and angle
    come from the image's cepstrum: linear motion blur. None for images over
    :data:`DEBLUR_MAX_SIDE` (the FFTs grow with the image) or under 48 px a side."""
    if max(image.shape[:2]) > DEBLUR_MAX_SIDE or min(image.shape[:2]) < 48:
        return None
    rgb = np.ascontiguousarray(image)
    length, angle = _blur_estimate(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    h = np.fft.fft2(_line_kernel(length, angle, rgb.shape[:2]))
    gain = np.conj(h) / (np.abs(h) ** 2 + 0.01)
    out = np.real(np.fft.ifft2(np.fft.fft2(rgb.astype(np.float32), axes=(0, 1))
                               * gain[..., None], axes=(0, 1)))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def upscale(image: np.ndarray) -> np.ndarray | None:
    """The image at :data:`UPSCALE` times its size (bicubic); None for an image whose long
    side is over :data:`UPSCALE_MAX_SIDE` (its faces are not too small for the detector)."""
    h, w = image.shape[:2]
    if max(h, w) > UPSCALE_MAX_SIDE:
        return None
    return cv2.resize(np.ascontiguousarray(image), (round(w * UPSCALE), round(h * UPSCALE)),
                      interpolation=cv2.INTER_CUBIC)


_RESTORE: dict[str, Callable[[np.ndarray], np.ndarray | None]] = {
    "clahe": clahe,
    "exposure": exposure,
    "dehaze": dehaze,
    "thick_fog": thick_fog,
    "denoise": denoise,
    "derain": derain,
    "deblur": deblur,
    "upscale": upscale,
}
RETRIES: tuple[str, ...] = tuple(_RESTORE)
# denoise is not a default: on the benchmark MTCNN finds every noisy face at severities 3-4
# without it, and it was the retry that took most non-faces for faces (6 of 8 on two draws)
DEFAULT_RETRIES: tuple[str, ...] = tuple(name for name in RETRIES if name != "denoise")


def restore(image: np.ndarray, name: str) -> np.ndarray | None:
    """The copy of ``image`` (uint8 RGB) the retry ``name`` detects on, or None where the
    retry does not apply to it."""
    if name not in _RESTORE:
        raise UnknownNameError("detection retry", name, RETRIES)
    return _RESTORE[name](image)


def retry_scale(name: str) -> float:
    """How much larger the retry's copy is than the image (boxes are divided by it)."""
    return UPSCALE if name == "upscale" else 1.0
