"""MTCNN's box math on torch tensors: non-maximum suppression, box regression, squaring,
crop geometry and area resampling of many crops at once.

Each function here is the numpy one of :mod:`siamface.detect.cascade` (which both runtimes
use) behind a tensor interface: tensors in, tensors out. Boxes are float tensors (N, 4) of
x1, y1, x2, y2 in pixels; images are (3, H, W) uint8 tensors.
"""

from __future__ import annotations

import numpy as np
import torch

from siamface.detect import cascade
from siamface.detect.cascade import NmsMode

__all__ = [
    "crop_windows",
    "integral_images",
    "nms",
    "pairwise_overlap",
    "proposal_boxes",
    "regress_boxes",
    "resample_crops",
    "square_boxes",
]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a) if a.strides and min(a.strides) < 0 else a)


def pairwise_overlap(a: torch.Tensor, b: torch.Tensor, mode: NmsMode = "union",
                     plus_one: bool = False) -> torch.Tensor:
    """See :func:`siamface.detect.cascade.pairwise_overlap`."""
    return _t(cascade.pairwise_overlap(_np(a), _np(b), mode, plus_one))


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float,
        groups: torch.Tensor | None = None, mode: NmsMode = "union",
        plus_one: bool = False) -> torch.Tensor:
    """See :func:`siamface.detect.cascade.nms`; a long tensor of kept indices."""
    return _t(cascade.nms(_np(boxes), _np(scores), threshold,
                          None if groups is None else _np(groups), mode, plus_one))


def proposal_boxes(reg: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """See :func:`siamface.detect.cascade.proposal_boxes`."""
    out = cascade.proposal_boxes(_np(reg), _np(prob), scale, threshold)
    return tuple(_t(a) for a in out)  # type: ignore[return-value]


def regress_boxes(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool) -> torch.Tensor:
    """See :func:`siamface.detect.cascade.regress_boxes`."""
    return _t(cascade.regress_boxes(_np(boxes), _np(offsets), plus_one))


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """See :func:`siamface.detect.cascade.square_boxes`."""
    return _t(cascade.square_boxes(_np(boxes)))


def crop_windows(boxes: torch.Tensor) -> torch.Tensor:
    """See :func:`siamface.detect.cascade.crop_windows`."""
    return _t(cascade.crop_windows(_np(boxes)))


def integral_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed-area tables of images (3, H, W); see
    :func:`siamface.detect.cascade.integral_images`."""
    table, meta = cascade.integral_images([_np(i.permute(1, 2, 0)) for i in images])
    return _t(table), _t(meta)


def resample_crops(table: torch.Tensor, meta: torch.Tensor, image_index: torch.Tensor,
                   windows: torch.Tensor, size: int, sizes: torch.Tensor, mean: float = 0.0,
                   scale: float = 1.0) -> torch.Tensor:
    """See :func:`siamface.detect.cascade.resample_crops`; float32 (N, 3, size, size),
    channels-last."""
    return _t(cascade.resample_crops(_np(table), _np(meta), _np(image_index), _np(windows),
                                     size, _np(sizes), mean, scale))
