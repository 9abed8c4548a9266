"""MTCNN's cascade in numpy: the box math (non-maximum suppression, box regression,
squaring, crop geometry, area resampling of many crops at once) and the three-stage
algorithm, with the three networks left to a subclass.

Both runtimes share this module: :class:`siamface.detect.MTCNN` runs the networks in torch,
:class:`siamface.ort.OnnxMTCNN` in ONNX Runtime; everything between the network calls is the
same numpy code. Nothing here imports torch.

Boxes are float arrays (N, 4) of x1, y1, x2, y2 in pixels; every function works on a whole
set of boxes at once (no Python loop over boxes). Images are (H, W, 3) uint8 RGB arrays.
Network inputs are float32 (N, 3, S, S) arrays normalised as ``(pixel - 127.5) * 0.0078125``,
whose memory is channels-last (NHWC) unless made contiguous.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import cv2
import numpy as np

from siamface.errors import ConfigError, ImageDecodeError

__all__ = [
    "CROPS_PER_CALL",
    "MEAN",
    "PNET_PIXELS_PER_CALL",
    "SCALE",
    "Cascade",
    "Detections",
    "area_pool",
    "crop_windows",
    "in_chunks",
    "integral_images",
    "nms",
    "pairwise_overlap",
    "proposal_boxes",
    "pyramid_scales",
    "regress_boxes",
    "resample_crops",
    "sigmoid",
    "square_boxes",
    "stacked_integral",
]

NmsMode = Literal["union", "min"]
# Crops per R-Net / O-Net call and pixels per P-Net call, for runtimes that take a batch of
# any size: small enough that activations stay in cache (one big call is slower than
# several cache-sized ones on CPU, in torch and in ONNX Runtime alike).
CROPS_PER_CALL = (128, 32)
PNET_PIXELS_PER_CALL = 120_000
MEAN = 127.5
SCALE = 0.0078125  # 1 / 128


def in_chunks(run: Callable[[np.ndarray], Sequence[np.ndarray]], x: np.ndarray, chunk: int
              ) -> tuple[np.ndarray, ...]:
    """``run(x)`` (a network: numpy batch in, numpy outputs out) on at most ``chunk`` items
    of ``x`` at a time, the outputs concatenated along the batch."""
    if len(x) <= chunk:
        return tuple(run(x))
    parts = [run(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    return tuple(np.concatenate(p) for p in zip(*parts, strict=True))


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Face probabilities (float64) of the networks' face logits. The detector thresholds and
    ranks these rather than the networks' own float32 probabilities, which tie near 1 (two
    candidates 1.2e-7 apart in float32 in one runtime are equal in the other)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, np.float64)))


# --- box math --------------------------------------------------------------------------------


def pairwise_overlap(a: np.ndarray, b: np.ndarray, mode: NmsMode = "union",
                     plus_one: bool = False) -> np.ndarray:
    """Overlap of every box of ``a`` (..., N, 4) with every box of ``b`` (..., M, 4).

    ``mode="union"`` is intersection over union, ``"min"`` intersection over the smaller
    area. ``plus_one`` counts widths as ``x2 - x1 + 1`` (the Matlab MTCNN convention).
    """
    one = 1.0 if plus_one else 0.0
    area_a = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area_b = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    # One coordinate at a time (an inner axis of 2 makes numpy's loops crawl).
    inter = _overlap_length(a, b, 0, one)
    inter *= _overlap_length(a, b, 1, one)
    if mode == "union":
        denom = area_a[..., :, None] + area_b[..., None, :]
        denom -= inter
    elif mode == "min":
        denom = np.minimum(area_a[..., :, None], area_b[..., None, :])
    else:
        raise ValueError(f"unknown overlap mode {mode!r}; valid: union, min")
    with np.errstate(divide="ignore", invalid="ignore"):
        inter /= denom
    return inter


def _overlap_length(a: np.ndarray, b: np.ndarray, axis: int, one: float) -> np.ndarray:
    """Length (never negative) of the overlap of every box of ``a`` with every box of ``b``
    along x (``axis=0``) or y (``axis=1``)."""
    start = np.maximum(a[..., :, None, axis], b[..., None, :, axis])
    length = np.minimum(a[..., :, None, axis + 2], b[..., None, :, axis + 2])
    length -= start
    if one:
        length += one
    return np.clip(length, 0, None, out=length)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float,
        groups: np.ndarray | None = None, mode: NmsMode = "union",
        plus_one: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression, independently within each group.

    A box is dropped when its overlap with a kept box of higher score in the same group is
    above ``threshold``. Returns the int64 indices of the kept boxes, ordered by group, then
    by decreasing score (ties keep the input order).

    The greedy result is the unique fixed point of "kept iff no kept higher-scored box
    overlaps it"; iterating that rule from "all kept" reaches it exactly, usually in a few
    steps, with every step one batched array operation over padded per-group blocks. Groups
    share a block with groups of similar size (counts within a factor of two), so the
    padding never costs more than four times the real pairs.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.int64)
    if groups is None:
        groups = np.zeros(n, np.int64)
    order = np.argsort(-scores, kind="stable")
    order = order[np.argsort(groups[order], kind="stable")]
    sorted_boxes = boxes[order]
    ends = np.append(np.flatnonzero(np.diff(groups[order])) + 1, n)
    counts = np.diff(ends, prepend=0)
    starts = ends - counts
    kept = np.zeros(n, bool)
    size_class = np.floor(np.log2(counts)).astype(np.int64)
    for size in np.unique(size_class):
        members = size_class == size
        _keep_in_blocks(sorted_boxes, starts[members], counts[members], threshold, mode,
                        plus_one, kept)
    return order[kept]


def _keep_in_blocks(sorted_boxes: np.ndarray, starts: np.ndarray, counts: np.ndarray,
                    threshold: float, mode: NmsMode, plus_one: bool, kept: np.ndarray) -> None:
    """Greedy NMS of the groups ``sorted_boxes[start:start + count]`` (each sorted by
    decreasing score) in one padded block (G, size, 4); marks the survivors in ``kept``."""
    size = int(counts.max())
    rank = np.arange(size)
    valid = rank[None, :] < counts[:, None]
    position = starts[:, None] + np.minimum(rank[None, :], counts[:, None] - 1)
    block = sorted_boxes[position]  # padding repeats a group's last box; ``valid`` masks it
    overlap = pairwise_overlap(block, block, mode, plus_one)
    # suppresses[g, i, j]: i ranks above j and overlaps it too much (NaN compares False).
    higher = np.triu(np.ones((size, size), bool), 1)
    suppresses = (overlap > threshold) & higher & valid[:, :, None] & valid[:, None, :]
    keep = valid.copy()
    while True:
        suppressed = (suppresses & keep[:, :, None]).any(axis=1)
        new_keep = valid & ~suppressed
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    kept[position[keep]] = True


def proposal_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn P-Net maps into proposals in input-image pixels.

    ``reg`` (B, 4, H, W) and ``prob`` (B, H, W) come from one pyramid level of scale
    ``scale``. Every cell with ``prob >= threshold`` is a 12x12 window at stride 2. Returns
    ``(boxes (N, 4), scores (N,), offsets (N, 4), image_index (N,))``.
    """
    image, y, x = np.nonzero(prob >= threshold)
    scores = prob[image, y, x]
    offsets = reg[image, :, y, x]  # (N, 4): the indexed axes come first
    corner = np.stack([x, y], axis=1).astype(prob.dtype)
    top_left = np.floor((2 * corner + 1) / scale)
    bottom_right = np.floor((2 * corner + 12) / scale)
    return np.concatenate([top_left, bottom_right], axis=1), scores, offsets, image


def regress_boxes(boxes: np.ndarray, offsets: np.ndarray, plus_one: bool) -> np.ndarray:
    """Apply box regression: each side moves by its offset times the box width or height.

    P-Net's proposals use ``x2 - x1`` as the width, R-Net and O-Net ``x2 - x1 + 1``.
    """
    one = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + one
    h = boxes[:, 3] - boxes[:, 1] + one
    return boxes + offsets * np.stack([w, h, w, h], axis=1)


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of side max(width, height) around the same centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return np.stack([x1, y1, x1 + side, y1 + side], axis=1)


def crop_windows(boxes: np.ndarray) -> np.ndarray:
    """The integer pixel window each box is cropped from: (N, 4) int64 ``x0, y0, x1, y1``,
    half-open, 0-based, possibly outside the image (padded with zeros when resampled).

    Follows the Matlab MTCNN: coordinates are truncated, and the window runs from pixel
    ``trunc(x1)`` to ``trunc(x2)`` in 1-based, inclusive terms.
    """
    t = np.trunc(boxes).astype(np.int64)
    return np.stack([t[:, 0] - 1, t[:, 1] - 1, t[:, 2], t[:, 3]], axis=1)


def _table_dtype(pixels: int) -> type:
    return np.int32 if pixels * 255 < 2**31 else np.int64


def stacked_integral(images: np.ndarray, dtype: type | None = None) -> np.ndarray:
    """Summed-area tables (B, H + 1, W + 1, 3) of same-size images (B, H, W, 3) uint8:
    entry ``[b, y, x]`` sums image b over rows < y and columns < x, exactly (integers)."""
    b, h, w, c = images.shape
    dtype = dtype or _table_dtype(h * w)
    if dtype == np.int32:  # OpenCV's integral, exact and about ten times numpy's speed
        table = np.empty((b, h + 1, w + 1, c), np.int32)
        for image, out in zip(images, table, strict=True):
            cv2.integral(np.ascontiguousarray(image), out, sdepth=cv2.CV_32S)
        return table
    table = np.zeros((b, h + 1, w + 1, c), dtype)
    np.cumsum(np.cumsum(images, axis=1, dtype=dtype), axis=2, out=table[:, 1:, 1:])
    return table


def integral_images(images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Summed-area tables of images (H, W, 3) of any sizes, packed into one (P, 3) array.

    Returns ``(table, meta)``: ``meta`` (B, 2) int64 holds each image's first row in
    ``table`` and its table width ``W + 1``. Row ``meta[b, 0] + y * (W + 1) + x`` of
    ``table`` is the sum of each channel of image b over rows < y and columns < x, exactly
    (int32 while the sums fit, int64 otherwise).
    """
    largest = max((int(i.shape[0]) * int(i.shape[1]) for i in images), default=0)
    dtype = _table_dtype(largest)
    return pack_tables([stacked_integral(i[None], dtype)[0] for i in images])


def pack_tables(tables: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-image summed-area tables (H + 1, W + 1, 3) packed as :func:`integral_images`
    returns them."""
    meta, offset = [], 0
    for table in tables:
        meta.append((offset, table.shape[1]))
        offset += table.shape[0] * table.shape[1]
    packed = (np.concatenate([t.reshape(-1, t.shape[-1]) for t in tables]) if tables
              else np.zeros((0, 3), np.int32))
    return packed, np.array(meta, dtype=np.int64).reshape(-1, 2)


def _bin_edges(start: np.ndarray, length: np.ndarray, size: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive-average-pooling bins of a window: (N, size) first and past-the-end indices."""
    i = np.arange(size)
    first = (i * length[:, None]) // size
    last = -((-(i + 1) * length[:, None]) // size)  # ceil division
    return start[:, None] + first, start[:, None] + last


# Output pixels worked on per step of the resampling loops: enough to amortise numpy's call
# overhead, few enough that the temporaries stay in cache.
_PIXELS_PER_STEP = 40_000


def area_pool(table: np.ndarray, height: int, width: int, mean: float = 0.0,
              scale: float = 1.0) -> np.ndarray:
    """Adaptive average pooling of whole images to ``height`` x ``width`` from their
    stacked summed-area tables (:func:`stacked_integral`), normalised as
    ``(mean_pixel - mean) * scale``: float32 (B, 3, height, width) with channels-last memory
    (the bins of ``torch.nn.functional.adaptive_avg_pool2d``; the sums are exact)."""
    h, w = table.shape[1] - 1, table.shape[2] - 1
    ys, ye = (a[0] for a in _bin_edges(np.zeros(1, np.int64), np.array([h]), height))
    xs, xe = (a[0] for a in _bin_edges(np.zeros(1, np.int64), np.array([w]), width))
    columns = np.concatenate([xs, xe])
    area = ((ye - ys)[:, None] * (xe - xs)[None, :]).astype(np.float32)[:, :, None]
    out = np.empty((table.shape[0], height, width, table.shape[3]), np.float32)
    step = max(1, _PIXELS_PER_STEP // (height * width))
    for first in range(0, len(table), step):
        part = table[first:first + step]
        rows = np.take(part, ye, axis=1) - np.take(part, ys, axis=1)
        edges = np.take(rows, columns, axis=2)
        sums = edges[:, :, width:] - edges[:, :, :width]
        o = out[first:first + step]
        np.divide(sums, area, out=o, dtype=np.float32)
        o -= np.float32(mean)
        o *= np.float32(scale)
    return out.transpose(0, 3, 1, 2)


def resample_crops(table: np.ndarray, meta: np.ndarray, image_index: np.ndarray,
                   windows: np.ndarray, size: int, sizes: np.ndarray, mean: float = 0.0,
                   scale: float = 1.0) -> np.ndarray:
    """Area-resample many windows to ``size`` x ``size`` in one go.

    ``table`` and ``meta`` come from :func:`integral_images`, ``sizes`` (B, 2) holds each
    image's height and width; ``windows`` (N, 4) come from :func:`crop_windows`, on images
    ``image_index`` (N,). Pixels outside the image count as zeros. Each output pixel is the
    mean over its adaptive-average-pooling bin, so a window inside the image gives exactly
    area interpolation of the crop; the result is then normalised as
    ``(pixel - mean) * scale``. Returns float32 (N, 3, size, size) with channels-last memory.
    """
    n, s, channels = len(windows), size, table.shape[-1]
    out = np.empty((n, s, s, channels), np.float32)
    if n == 0:
        return out.transpose(0, 3, 1, 2)
    # Each table row (a pixel's channel sums) as one item, so one gather moves whole rows.
    rows_of = np.ascontiguousarray(table).view(np.dtype((np.void, table.itemsize * channels)))
    rows_of = rows_of.reshape(-1)
    offset, width = meta[image_index].T
    height, image_width = sizes[image_index].T
    shift = np.float32(mean * scale)
    step = max(1, _PIXELS_PER_STEP // (s * s))
    for a in range(0, n, step):
        b = min(n, a + step)
        x0, y0, x1, y1 = windows[a:b].T
        xs, xe = _bin_edges(x0, x1 - x0, s)
        ys, ye = _bin_edges(y0, y1 - y0, s)
        area = ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).astype(np.float32)
        factor = (np.float32(scale) / area)[..., None]
        # Clamping to the image makes everything outside it contribute zero.
        rows = np.minimum(np.clip(np.concatenate([ys, ye], axis=1), 0, None),
                          height[a:b, None])
        cols = np.minimum(np.clip(np.concatenate([xs, xe], axis=1), 0, None),
                          image_width[a:b, None])
        # One gather of the grid of all bin edges, rows (ys, ye) x columns (xs, xe).
        index = (offset[a:b, None] + rows * width[a:b, None])[:, :, None] + cols[:, None, :]
        grid = np.take(rows_of, index.reshape(-1)).view(table.dtype)
        grid = grid.reshape(b - a, 2 * s, 2 * s, channels)
        sums = grid[:, s:, s:] - grid[:, :s, s:]
        sums -= grid[:, s:, :s]
        sums += grid[:, :s, :s]
        o = out[a:b]
        np.multiply(sums, factor, out=o, dtype=np.float32)
        o -= shift
    return out.transpose(0, 3, 1, 2)


def pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net (a 12-pixel window) sees faces from ``min_face_size`` up to the
    whole image: 12 / min_face_size, then times ``factor`` while the short side stays >= 12."""
    scale = 12.0 / min_face_size
    short = min(height, width) * scale
    scales = []
    while short >= 12:
        scales.append(scale)
        scale *= factor
        short *= factor
    return scales


# --- the cascade -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """Faces found in one image, by decreasing score, in original-image pixels.

    ``boxes`` (K, 4) float32 x1, y1, x2, y2; ``scores`` (K,) float32 face probabilities;
    ``landmarks`` (K, 5, 2) float32 x, y of left eye, right eye, nose, mouth left, mouth
    right (left and right as seen in the image). K may be 0.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        """No faces."""
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
        )


_CropSource = tuple[np.ndarray, np.ndarray, np.ndarray]


class Cascade:
    """MTCNN's three stages (P-Net over an image pyramid, then R-Net and O-Net over the
    surviving candidates, batched over images); a subclass runs the networks.

    ``min_face_size`` is the smallest face (pixels) searched for, ``factor`` the ratio
    between pyramid levels, ``thresholds`` the face-probability thresholds of P-Net, R-Net and
    O-Net, and images whose long side exceeds ``max_side`` are shrunk to it for detection
    (results are mapped back to the original pixels).

    ``version`` names the cascade's arithmetic: it goes into the crop cache's key, so crops
    cut by an older cascade are never reused. Raise it with any change that can move a box.
    """

    version = 2  # 2: thresholds compared with the networks' raw logits

    def __init__(
        self,
        min_face_size: float = 20,
        factor: float = 0.709,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        max_side: int = 1024,
    ) -> None:
        if not min_face_size >= 12:
            raise ConfigError(
                f"min_face_size must be >= 12 pixels (P-Net's window), got {min_face_size!r}"
            )
        if not 0 < factor < 1:
            raise ConfigError(f"factor must be between 0 and 1 (exclusive), got {factor!r}")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0 <= t < 1 for t in thresholds):
            raise ConfigError(
                f"thresholds must be three probabilities in [0, 1) for P-Net, R-Net and O-Net, "
                f"got {thresholds!r}"
            )
        if not max_side >= 48:
            raise ConfigError(f"max_side must be >= 48 pixels, got {max_side!r}")
        self.min_face_size = float(min_face_size)
        self.factor = float(factor)
        self.thresholds: tuple[float, float, float] = thresholds  # type: ignore[assignment]
        self.max_side = int(max_side)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(min_face_size={self.min_face_size:g}, "
            f"factor={self.factor:g}, thresholds={self.thresholds}, max_side={self.max_side})"
        )

    # the networks: float32 (N, 3, S, S) inputs, numpy outputs ---------------------------------
    def run_pnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box regression (N, 4, H', W') and face logit (N, H', W') of P-Net."""
        raise NotImplementedError

    def run_rnet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Box regression (N, 4) and face logit (N,) of R-Net on 24x24 crops."""
        raise NotImplementedError

    def run_onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Box regression (N, 4), landmarks (N, 10) and face logit (N,) of O-Net on 48x48
        crops."""
        raise NotImplementedError

    # detection ------------------------------------------------------------------------------
    @overload
    def detect(self, image: np.ndarray) -> Detections: ...

    @overload
    def detect(self, image: Sequence[np.ndarray]) -> list[Detections]: ...

    def detect(self, image: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        """Detect faces in one (H, W, 3) uint8 RGB image, or in a list of them (batched)."""
        if isinstance(image, np.ndarray):
            return self.detect_batch([image])[0]
        return self.detect_batch(image)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect faces in a list of (H, W, 3) uint8 RGB images of any sizes.

        Images of equal size go through P-Net together, one call per pyramid level; the
        candidates of all images then go through R-Net and O-Net together.
        """
        if isinstance(images, np.ndarray):
            raise ImageDecodeError(
                "array", "detect_batch takes a list of (H, W, 3) images; use detect() for one"
            )
        prepared = [self._prepare(i, image) for i, image in enumerate(images)]
        if not prepared:
            return []
        arrays = [p[0] for p in prepared]
        boxes, image_index, tables = self._propose(arrays)
        table, meta = pack_tables(tables)
        sizes = np.array([a.shape[:2] for a in arrays], dtype=np.int64).reshape(-1, 2)
        crops = (table, meta, sizes)
        boxes, image_index = self._refine(boxes, image_index, crops)
        boxes, scores, points, image_index = self._output(boxes, image_index, crops)
        results = []
        for i, (_, ratio) in enumerate(prepared):
            mine = image_index == i
            results.append(Detections(
                boxes=(boxes[mine] * ratio).astype(np.float32),
                scores=scores[mine].astype(np.float32),
                landmarks=(points[mine] * ratio).astype(np.float32),
            ))
        return results

    def _prepare(self, index: int, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Validate one image and shrink it to ``max_side``; returns it and the factor that
        maps its pixels back to the original."""
        if not isinstance(image, np.ndarray):
            raise ImageDecodeError(
                f"image {index}",
                f"expected a numpy array (H, W, 3) uint8 RGB, got {type(image).__name__}; "
                "decode files with siamface.io.load_image",
            )
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageDecodeError(
                f"image {index}",
                f"expected an (H, W, 3) uint8 RGB array, got shape {image.shape} dtype "
                f"{image.dtype}; decode files with siamface.io.load_image",
            )
        height, width = image.shape[:2]
        if max(height, width) <= self.max_side:
            return image, 1.0
        shrink = self.max_side / max(height, width)
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return small, max(height, width) / max(small.shape[:2])

    def _propose(self, images: list[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Stage 1: P-Net over the pyramid of every image; squared candidate boxes (N, 4),
        the index of the image each one belongs to, and each image's summed-area table."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[:2]), []).append(i)
        largest = max(int(i.shape[0]) * int(i.shape[1]) for i in images)
        dtype = _table_dtype(largest)
        tables: list[np.ndarray] = [np.empty(0)] * len(images)
        all_boxes, all_scores, all_offsets, all_images = [], [], [], []
        for (height, width), members in by_size.items():
            table = stacked_integral(np.stack([images[i] for i in members]), dtype)
            for j, i in enumerate(members):
                tables[i] = table[j]
            members_a = np.array(members, dtype=np.int64)
            for scale in pyramid_scales(height, width, self.min_face_size, self.factor):
                x = area_pool(table, int(height * scale + 1), int(width * scale + 1),
                              MEAN, SCALE)
                reg, logit = self.run_pnet(x)
                boxes, scores, offsets, local = proposal_boxes(
                    reg, sigmoid(logit), scale, self.thresholds[0])
                # NMS within each image at this level (one call: padded per-image blocks).
                keep = nms(boxes, scores, 0.5, groups=local)
                all_boxes.append(boxes[keep])
                all_scores.append(scores[keep])
                all_offsets.append(offsets[keep])
                all_images.append(members_a[local[keep]])
        if not all_boxes:
            return np.zeros((0, 4)), np.zeros(0, np.int64), tables
        boxes = np.concatenate(all_boxes)
        scores = np.concatenate(all_scores)
        offsets = np.concatenate(all_offsets)
        image_index = np.concatenate(all_images)
        keep = nms(boxes, scores, 0.7, groups=image_index)
        boxes = square_boxes(regress_boxes(boxes[keep], offsets[keep], plus_one=False))
        return boxes, image_index[keep], tables

    @staticmethod
    def _crops(source: _CropSource, image_index: np.ndarray, boxes: np.ndarray,
               size: int) -> np.ndarray:
        """Normalised ``size`` x ``size`` crops of ``boxes`` (zero-padded past the border)."""
        table, meta, sizes = source
        return resample_crops(table, meta, image_index, crop_windows(boxes), size, sizes,
                              MEAN, SCALE)

    def _refine(self, boxes: np.ndarray, image_index: np.ndarray, crops: _CropSource
                ) -> tuple[np.ndarray, np.ndarray]:
        """Stage 2: R-Net on 24x24 crops of all candidates; refined squared boxes."""
        if len(boxes) == 0:
            return boxes, image_index
        offsets, logit = self.run_rnet(self._crops(crops, image_index, boxes, 24))
        scores = sigmoid(logit)
        passed = scores > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
        image_index = image_index[passed]
        keep = nms(boxes, scores, 0.7, groups=image_index)
        boxes = square_boxes(regress_boxes(boxes[keep], offsets[keep], plus_one=True))
        return boxes, image_index[keep]

    def _output(self, boxes: np.ndarray, image_index: np.ndarray, crops: _CropSource
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Stage 3: O-Net on 48x48 crops; final boxes, scores, landmarks (N, 5, 2), image
        index, ordered by image then decreasing score."""
        if len(boxes) == 0:
            return boxes, np.zeros(0), np.zeros((0, 5, 2)), image_index
        offsets, marks, logit = self.run_onet(self._crops(crops, image_index, boxes, 48))
        scores = sigmoid(logit)
        passed = scores > self.thresholds[2]
        boxes, scores, offsets, marks = boxes[passed], scores[passed], offsets[passed], marks[passed]
        image_index = image_index[passed]
        size = boxes[:, 2:] - boxes[:, :2] + 1  # (N, 2) width, height
        points = (marks.reshape(-1, 2, 5).transpose(0, 2, 1) * size[:, None]
                  + boxes[:, None, :2] - 1)
        boxes = regress_boxes(boxes, offsets, plus_one=True)
        keep = nms(boxes, scores, 0.7, groups=image_index, mode="min", plus_one=True)
        return boxes[keep], scores[keep], points[keep], image_index[keep]
