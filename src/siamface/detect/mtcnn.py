"""The MTCNN face detector (Zhang et al. 2016): P-Net over an image pyramid, then R-Net and
O-Net over the surviving candidates, batched over images.

The algorithm follows facenet-pytorch's ``detect_face`` (itself a port of the Matlab code):
the same pyramid, thresholds, regression and non-maximum suppression conventions, with two
differences: crops that reach past the image border are padded with zeros as in the Matlab
original (facenet-pytorch clips them, which distorts them), and everything after P-Net is
vectorised: the crops of all images are resampled at once from integral images, and
classified in cache-sized chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from siamface.detect.boxes import (
    crop_windows,
    integral_images,
    nms,
    proposal_boxes,
    regress_boxes,
    resample_crops,
    square_boxes,
)
from siamface.detect.nets import ONet, PNet, RNet, load_networks
from siamface.errors import ConfigError, ImageDecodeError

__all__ = ["MTCNN", "Detections", "pyramid_scales"]

_MEAN = 127.5
_SCALE = 0.0078125  # 1 / 128
# Crops per R-Net / O-Net call and pixels per P-Net call: small enough that activations stay
# in cache (one big call is slower than several cache-sized ones on CPU).
_CROPS_PER_CALL = (128, 32)
_PNET_PIXELS_PER_CALL = 120_000

_CropSource = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _crops(
    source: _CropSource, image_index: torch.Tensor, boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """Normalised ``size`` x ``size`` crops of ``boxes`` (zero-padded past the border)."""
    table, meta, sizes = source
    return resample_crops(
        table, meta, image_index, crop_windows(boxes), size, sizes, _MEAN, _SCALE
    )


def _chunked(net: torch.nn.Module, x: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
    """``net(x)`` in chunks of ``chunk`` along the batch, outputs concatenated."""
    if x.shape[0] <= chunk:
        return net(x)
    parts = [net(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)]
    return tuple(torch.cat(p) for p in zip(*parts, strict=True))


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


class MTCNN:
    """Multi-task cascaded CNN face detector with the original MTCNN weights.

    ``min_face_size`` is the smallest face (pixels) searched for, ``factor`` the ratio
    between pyramid levels, ``thresholds`` the face-probability thresholds of P-Net, R-Net and
    O-Net, and images whose long side exceeds ``max_side`` are shrunk to it for detection
    (results are mapped back to the original pixels). The networks are loaded once per
    process and shared by all instances.
    """

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
        self.pnet: PNet
        self.rnet: RNet
        self.onet: ONet
        self.pnet, self.rnet, self.onet = load_networks()

    def __repr__(self) -> str:
        return (
            f"MTCNN(min_face_size={self.min_face_size:g}, factor={self.factor:g}, "
            f"thresholds={self.thresholds}, max_side={self.max_side})"
        )

    @overload
    def detect(self, image: np.ndarray) -> Detections: ...

    @overload
    def detect(self, image: Sequence[np.ndarray]) -> list[Detections]: ...

    def detect(self, image: np.ndarray | Sequence[np.ndarray]) -> Detections | list[Detections]:
        """Detect faces in one (H, W, 3) uint8 RGB image, or in a list of them (batched)."""
        if isinstance(image, np.ndarray):
            return self.detect_batch([image])[0]
        return self.detect_batch(image)

    @torch.inference_mode()
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
        tensors = [torch.from_numpy(p[0]).permute(2, 0, 1) for p in prepared]
        boxes, image_index = self._propose(tensors)
        table, meta = integral_images(tensors)
        sizes = torch.tensor([tuple(t.shape[1:]) for t in tensors], dtype=torch.long)
        crops = (table, meta, sizes)
        boxes, image_index = self._refine(boxes, image_index, crops)
        boxes, scores, points, image_index = self._output(boxes, image_index, crops)
        results = []
        for i, (_, ratio) in enumerate(prepared):
            mine = image_index == i
            results.append(
                Detections(
                    boxes=(boxes[mine] * ratio).numpy().astype(np.float32),
                    scores=scores[mine].numpy().astype(np.float32),
                    landmarks=(points[mine] * ratio).numpy().astype(np.float32),
                )
            )
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
            if not image.flags.writeable:  # torch.from_numpy warns on read-only arrays
                image = image.copy()
            return np.ascontiguousarray(image), 1.0
        shrink = self.max_side / max(height, width)
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return small, max(height, width) / max(small.shape[:2])

    def _propose(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 1: P-Net over the pyramid of every image; squared candidate boxes (N, 4)
        and the index of the image each one belongs to."""
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape[1:]), []).append(i)
        all_boxes, all_scores, all_offsets, all_images = [], [], [], []
        for (height, width), members in by_size.items():
            batch = torch.stack([images[i] for i in members]).float()
            members_t = torch.tensor(members)
            scales = pyramid_scales(height, width, self.min_face_size, self.factor)
            for scale in scales:
                size = (int(height * scale + 1), int(width * scale + 1))
                scaled = (F.adaptive_avg_pool2d(batch, size) - _MEAN) * _SCALE
                per_call = max(1, _PNET_PIXELS_PER_CALL // (size[0] * size[1]))
                reg, prob = _chunked(self.pnet, scaled, per_call)
                boxes, scores, offsets, local = proposal_boxes(
                    reg, prob, scale, self.thresholds[0]
                )
                # NMS within each image at this level (one call: padded per-image blocks).
                keep = nms(boxes, scores, 0.5, groups=local)
                all_boxes.append(boxes[keep])
                all_scores.append(scores[keep])
                all_offsets.append(offsets[keep])
                all_images.append(members_t[local[keep]])
        if not all_boxes:
            return torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
        boxes = torch.cat(all_boxes)
        scores = torch.cat(all_scores)
        offsets = torch.cat(all_offsets)
        image_index = torch.cat(all_images)
        keep = nms(boxes, scores, 0.7, groups=image_index)
        boxes = square_boxes(regress_boxes(boxes[keep], offsets[keep], plus_one=False))
        return boxes, image_index[keep]

    def _refine(
        self, boxes: torch.Tensor, image_index: torch.Tensor, crops: _CropSource
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2: R-Net on 24x24 crops of all candidates; refined squared boxes."""
        if boxes.shape[0] == 0:
            return boxes, image_index
        x = _crops(crops, image_index, boxes, 24)
        offsets, scores = _chunked(self.rnet, x, _CROPS_PER_CALL[0])
        passed = scores > self.thresholds[1]
        boxes, scores, offsets = boxes[passed], scores[passed], offsets[passed]
        image_index = image_index[passed]
        keep = nms(boxes, scores, 0.7, groups=image_index)
        boxes = square_boxes(regress_boxes(boxes[keep], offsets[keep], plus_one=True))
        return boxes, image_index[keep]

    def _output(
        self, boxes: torch.Tensor, image_index: torch.Tensor, crops: _CropSource
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage 3: O-Net on 48x48 crops; final boxes, scores, landmarks (N, 5, 2), image
        index, ordered by image then decreasing score."""
        if boxes.shape[0] == 0:
            return boxes, torch.zeros(0), torch.zeros(0, 5, 2), image_index
        x = _crops(crops, image_index, boxes, 48)
        offsets, marks, scores = _chunked(self.onet, x, _CROPS_PER_CALL[1])
        passed = scores > self.thresholds[2]
        boxes, scores, offsets, marks = boxes[passed], scores[passed], offsets[passed], marks[passed]
        image_index = image_index[passed]
        size = boxes[:, 2:] - boxes[:, :2] + 1  # (N, 2) width, height
        points = marks.reshape(-1, 2, 5).transpose(1, 2) * size[:, None] + boxes[:, None, :2] - 1
        boxes = regress_boxes(boxes, offsets, plus_one=True)
        keep = nms(boxes, scores, 0.7, groups=image_index, mode="min", plus_one=True)
        return boxes[keep], scores[keep], points[keep], image_index[keep]
