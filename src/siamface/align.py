"""Face alignment as pure array math: similarity transforms to 5-point templates, warps and
simple crops.

Coordinates are (x, y) in pixels with pixel centres at integers (the convention of OpenCV and
dlib), so the point (0, 0) is the centre of the top-left pixel. Templates are kept here as data,
each with a note saying where its points come from. Nothing in this module reads or writes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "ARCFACE_112_TEMPLATE",
    "DLIB_150_TEMPLATE",
    "TEMPLATES",
    "FaceTemplate",
    "align_face",
    "center_crop",
    "invert_affine",
    "padded_crop",
    "similarity_transform",
    "transform_points",
    "warp_affine",
]

# Points are ordered as MTCNN returns them: left eye, right eye, nose, mouth left, mouth right
# ("left" is the left of the image, i.e. the subject's right).


@dataclass(frozen=True)
class FaceTemplate:
    """Where the 5 MTCNN landmarks should land in a square chip of ``size`` pixels.

    ``weights`` (one per point, ``None``: all equal) weigh the points in the least-squares fit;
    a point of weight 0 is ignored."""

    name: str
    size: int
    points: tuple[tuple[float, float], ...]
    origin: str
    weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float64)
        if pts.shape != (5, 2) or not np.all(np.isfinite(pts)):
            raise ValueError(f"template {self.name!r} needs 5 finite (x, y) points, got {pts.shape}")
        if int(self.size) <= 0:
            raise ValueError(f"template {self.name!r} needs a positive size, got {self.size}")
        if self.weights is not None:
            w = np.asarray(self.weights, dtype=np.float64)
            if w.shape != (5,) or np.any(w < 0) or np.count_nonzero(w) < 2:
                raise ValueError(
                    f"template {self.name!r} needs 5 weights >= 0 with at least 2 positive, "
                    f"got {self.weights}"
                )

    def as_array(self) -> np.ndarray:
        """The points as a (5, 2) float64 array."""
        return np.asarray(self.points, dtype=np.float64)

    def scaled(self, size: int) -> FaceTemplate:
        """The same template for a chip of ``size`` pixels (pixel-centre convention, so the
        chip's edges, not its corner pixel centres, scale together)."""
        if int(size) <= 0:
            raise ValueError(f"chip size must be positive, got {size}")
        if int(size) == self.size:
            return self
        factor = int(size) / self.size
        pts = (self.as_array() + 0.5) * factor - 0.5
        return FaceTemplate(
            name=f"{self.name}@{int(size)}",
            size=int(size),
            points=tuple((float(x), float(y)) for x, y in pts),
            origin=f"{self.origin} (scaled from {self.size} to {int(size)} px)",
            weights=self.weights,
        )

    def transform_from(self, landmarks: np.ndarray) -> np.ndarray:
        """The (2, 3) similarity taking 5 image ``landmarks`` onto this template."""
        return similarity_transform(
            np.asarray(landmarks, dtype=np.float64).reshape(5, 2), self.as_array(), self.weights
        )

    def to_dict(self) -> dict:
        """JSON-serialisable description (for cache keys and checkpoints)."""
        return {
            "name": self.name,
            "size": self.size,
            "points": [[round(x, 4), round(y, 4)] for x, y in self.points],
            "weights": None if self.weights is None else [float(w) for w in self.weights],
        }


# Derived empirically by scripts/derive_dlib_template.py (seed 0):
#   PYTHONPATH=src .venv/bin/python scripts/derive_dlib_template.py --faces 400 --check 500
# Points: dlib's 150 px chips (frontal detector, upsample 1, face nearest the image centre;
# shape_predictor_5; get_face_chip(size=150, padding=0.25)) of 400 random LFW images, each
# re-detected with siamface.detect.MTCNN; per-coordinate median of the 400 landmark sets.
# Weights: dlib aligns on eye corners and the base of the nose only, and MTCNN's mouth corners
# move with expression, so the fit weighs eyes 1, nose 0.3, mouth 0 (grid search on the same
# 400 faces minimising the median chip-corner distance; 0.4 was a near tie). On 500 other LFW
# faces the median distance between where our chip's corners and dlib's fall in the original
# image is 2.75 px (90th percentile 5.5 px; about 4.5 px with equal weights).
DLIB_150_TEMPLATE = FaceTemplate(
    name="dlib-150",
    size=150,
    points=(
        (47.10, 44.90),
        (102.15, 45.13),
        (74.03, 77.52),
        (50.81, 105.64),
        (98.30, 105.58),
    ),
    origin="MTCNN landmarks on dlib get_face_chip(150, 0.25) chips, median of 400 LFW faces",
    weights=(1.0, 1.0, 0.3, 0.0, 0.0),
)

# insightface recognition/common/face_align.py (arcface_dst), for 112x112 ArcFace chips.
ARCFACE_112_TEMPLATE = FaceTemplate(
    name="arcface-112",
    size=112,
    points=(
        (38.2946, 51.6963),
        (73.5318, 51.5014),
        (56.0252, 71.7366),
        (41.5493, 92.3655),
        (70.7299, 92.2041),
    ),
    origin="insightface recognition/common/face_align.py arcface_dst",
)

TEMPLATES: dict[str, FaceTemplate] = {
    t.name: t for t in (DLIB_150_TEMPLATE, ARCFACE_112_TEMPLATE)
}


def similarity_transform(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | Sequence[float] | None = None
) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) taking
    ``src`` points onto ``dst`` points (Umeyama 1991), optionally weighted per point. Returns
    the (2, 3) matrix ``M`` with ``dst ~= src @ M[:, :2].T + M[:, 2]``."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(
            f"need two (N, 2) point arrays of the same shape with N >= 2, "
            f"got {src.shape} and {dst.shape}"
        )
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("points must be finite")
    if weights is None:
        w = np.full(len(src), 1.0 / len(src))
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(src),) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError(f"need {len(src)} weights >= 0 with a positive sum, got {w}")
        w = w / w.sum()
    src_mean = w @ src
    dst_mean = w @ dst
    src_c = src - src_mean
    dst_c = dst - dst_mean
    src_var = float(w @ (src_c**2).sum(axis=1))
    if src_var <= 1e-12:
        raise ValueError("source points are all the same; the transform is undefined")
    cov = (dst_c * w[:, None]).T @ src_c
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0  # the best fit would be a reflection: take the best proper rotation
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / src_var)
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - matrix[:, :2] @ src_mean
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix, as a (2, 3) matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"need a (2, 3) affine matrix, got {m.shape}")
    return cv2.invertAffineTransform(m)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points."""
    m = np.asarray(matrix, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


_BORDERS = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}


def warp_affine(
    image: np.ndarray, matrix: np.ndarray, size: int, border: str = "constant"
) -> np.ndarray:
    """Warp ``image`` (H, W, 3) uint8 into a (size, size, 3) chip with the (2, 3) matrix taking
    image coordinates to chip coordinates. Bilinear; outside the image is black
    (``border="constant"``, what dlib's ``get_face_chip`` does) or the nearest edge pixel
    (``"replicate"``). When the chip is much smaller than the face, the image is first shrunk
    with area averaging (as dlib does with its image pyramid) so the chip is not aliased."""
    if border not in _BORDERS:
        raise ValueError(f"border must be one of {sorted(_BORDERS)}, got {border!r}")
    img = _as_rgb_uint8(image)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"need a (2, 3) affine matrix, got {m.shape}")
    size = int(size)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))  # chip pixels per image pixel
    if 0 < scale < 0.5:
        shrink = 1.0 / (2.0 * scale)  # leave the final warp a 2x downscale at most
        h, w = img.shape[:2]
        new_w, new_h = max(1, round(w / shrink)), max(1, round(h / shrink))
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_AREA)
        sx, sy = w / new_w, h / new_h
        # small-image pixel (u, v) sits at big-image ((u + 0.5) * sx - 0.5, ...)
        to_big = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
        m = (np.vstack([m, [0, 0, 1]]) @ to_big)[:2]
    return cv2.warpAffine(
        img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=_BORDERS[border],
        borderValue=(0, 0, 0),
    )


def align_face(
    image: np.ndarray, landmarks: np.ndarray, template: FaceTemplate, size: int | None = None,
    border: str = "constant",
) -> np.ndarray:
    """Chip of ``size`` (default: the template's) with the 5 ``landmarks`` moved onto the
    template by a similarity transform."""
    tmpl = template if size is None else template.scaled(size)
    matrix = tmpl.transform_from(landmarks)
    return warp_affine(image, matrix, tmpl.size, border=border)


def padded_crop(image: np.ndarray, box: np.ndarray, size: int, pad: float = 0.2) -> np.ndarray:
    """Crop the box (x1, y1, x2, y2) grown by ``pad`` of its width (height) on each side,
    clipped to the image, resized to (size, size) without keeping the aspect ratio."""
    img = _as_rgb_uint8(image)
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    bw, bh = x2 - x1, y2 - y1
    left = int(np.clip(np.floor(x1 - pad * bw), 0, w - 1))
    top = int(np.clip(np.floor(y1 - pad * bh), 0, h - 1))
    right = int(np.clip(np.ceil(x2 + pad * bw), left + 1, w))
    bottom = int(np.clip(np.ceil(y2 + pad * bh), top + 1, h))
    return _resize(img[top:bottom, left:right], int(size))


def center_crop(image: np.ndarray, size: int, fraction: float = 0.8) -> np.ndarray:
    """The centred square of ``fraction`` of the short side, resized to (size, size)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    img = _as_rgb_uint8(image)
    h, w = img.shape[:2]
    side = max(1, round(fraction * min(h, w)))
    top, left = (h - side) // 2, (w - side) // 2
    return _resize(img[top : top + side, left : left + side], int(size))


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    shrinking = img.shape[0] > size or img.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(img, (size, size), interpolation=interp))


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or min(img.shape[:2]) < 1:
        raise ValueError(f"need an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    return np.ascontiguousarray(img)
