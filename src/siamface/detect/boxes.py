"""Pure-torch box math for MTCNN: non-maximum suppression, box regression, squaring, crop
geometry and area resampling of many crops at once.

Boxes are float tensors (N, 4) of x1, y1, x2, y2 in pixels. Nothing here touches files or
networks; every function works on a whole set of boxes at once (no Python loop over boxes).
"""

from __future__ import annotations

from typing import Literal

import torch

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

NmsMode = Literal["union", "min"]


def pairwise_overlap(
    a: torch.Tensor, b: torch.Tensor, mode: NmsMode = "union", plus_one: bool = False
) -> torch.Tensor:
    """Overlap of every box of ``a`` (..., N, 4) with every box of ``b`` (..., M, 4).

    ``mode="union"`` is intersection over union, ``"min"`` intersection over the smaller
    area. ``plus_one`` counts widths as ``x2 - x1 + 1`` (the Matlab MTCNN convention).
    """
    one = 1.0 if plus_one else 0.0
    area_a = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one)
    area_b = (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt + one).clamp_(min=0)
    inter = wh[..., 0] * wh[..., 1]
    if mode == "union":
        denom = area_a[..., :, None] + area_b[..., None, :] - inter
    elif mode == "min":
        denom = torch.minimum(area_a[..., :, None], area_b[..., None, :])
    else:
        raise ValueError(f"unknown overlap mode {mode!r}; valid: union, min")
    return inter / denom


def nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    threshold: float,
    groups: torch.Tensor | None = None,
    mode: NmsMode = "union",
    plus_one: bool = False,
) -> torch.Tensor:
    """Greedy non-maximum suppression, independently within each group.

    A box is dropped when its overlap with a kept box of higher score in the same group is
    above ``threshold``. Returns the indices of the kept boxes, ordered by group, then by
    decreasing score (the same boxes as torchvision's ``batched_nms`` for ``mode="union"``).

    The greedy result is the unique fixed point of "kept iff no kept higher-scored box
    overlaps it"; iterating that rule from "all kept" reaches it exactly, usually in a few
    steps, with every step one batched tensor operation over padded per-group blocks.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    if groups is None:
        groups = torch.zeros(n, dtype=torch.long, device=boxes.device)
    # Order by group, then by decreasing score (stable, so ties keep the input order).
    order = torch.argsort(scores, descending=True, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]
    sorted_groups = groups[order]
    _, counts = torch.unique_consecutive(sorted_groups, return_counts=True)
    size = int(counts.max())
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=boxes.device) - torch.repeat_interleave(starts, counts)
    slot = torch.repeat_interleave(torch.arange(len(counts), device=boxes.device), counts)
    # Padded blocks (G, size, 4); padding boxes are far away degenerate boxes, never valid.
    block = boxes.new_zeros(len(counts), size, 4)
    block[slot, rank] = boxes[order]
    valid = torch.zeros(len(counts), size, dtype=torch.bool, device=boxes.device)
    valid[slot, rank] = True
    overlap = pairwise_overlap(block, block, mode, plus_one)
    # suppresses[g, i, j]: i ranks above j and overlaps it too much (NaN compares False).
    higher = torch.ones(size, size, dtype=torch.bool, device=boxes.device).triu_(1)
    suppresses = (overlap > threshold) & higher & valid[:, :, None] & valid[:, None, :]
    keep = valid.clone()
    while True:
        suppressed = (suppresses & keep[:, :, None]).any(dim=1)
        new_keep = valid & ~suppressed
        if torch.equal(new_keep, keep):
            break
        keep = new_keep
    return order[keep[slot, rank]]


def proposal_boxes(
    reg: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Turn P-Net maps into proposals in input-image pixels.

    ``reg`` (B, 4, H, W) and ``prob`` (B, H, W) come from one pyramid level of scale
    ``scale``. Every cell with ``prob >= threshold`` is a 12x12 window at stride 2. Returns
    ``(boxes (N, 4), scores (N,), offsets (N, 4), image_index (N,))``.
    """
    image, y, x = (prob >= threshold).nonzero(as_tuple=True)
    scores = prob[image, y, x]
    offsets = reg[image, :, y, x]
    corner = torch.stack([x, y], dim=1).to(prob.dtype)
    top_left = torch.floor((2 * corner + 1) / scale)
    bottom_right = torch.floor((2 * corner + 12) / scale)
    return torch.cat([top_left, bottom_right], dim=1), scores, offsets, image


def regress_boxes(boxes: torch.Tensor, offsets: torch.Tensor, plus_one: bool) -> torch.Tensor:
    """Apply box regression: each side moves by its offset times the box width or height.

    P-Net's proposals use ``x2 - x1`` as the width, R-Net and O-Net ``x2 - x1 + 1``.
    """
    one = 1.0 if plus_one else 0.0
    w = boxes[:, 2] - boxes[:, 0] + one
    h = boxes[:, 3] - boxes[:, 1] + one
    return boxes + offsets * torch.stack([w, h, w, h], dim=1)


def square_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square of side max(width, height) around the same centre."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def crop_windows(boxes: torch.Tensor) -> torch.Tensor:
    """The integer pixel window each box is cropped from: (N, 4) long ``x0, y0, x1, y1``,
    half-open, 0-based, possibly outside the image (padded with zeros when resampled).

    Follows the Matlab MTCNN: coordinates are truncated, and the window runs from pixel
    ``trunc(x1)`` to ``trunc(x2)`` in 1-based, inclusive terms.
    """
    t = torch.trunc(boxes).long()
    return torch.stack([t[:, 0] - 1, t[:, 1] - 1, t[:, 2], t[:, 3]], dim=1)


def integral_images(images: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed-area tables of images (3, H, W) of any sizes, packed into one (P, 3) tensor.

    Returns ``(table, meta)``: ``meta`` (B, 2) holds each image's first row in ``table`` and
    its table width ``W + 1``. Row ``meta[b, 0] + y * (W + 1) + x`` of ``table`` is the sum
    of each channel of image b over rows < y and columns < x, exactly (integer arithmetic:
    int32 while the sums fit, int64 otherwise).
    """
    largest = max((int(i.shape[1]) * int(i.shape[2]) for i in images), default=0)
    dtype = torch.int32 if largest * 255 < 2**31 else torch.int64
    tables = []
    meta = []
    offset = 0
    for image in images:
        _, h, w = image.shape
        table = torch.zeros(h + 1, w + 1, 3, dtype=dtype)
        torch.cumsum(image.permute(1, 2, 0).to(dtype).cumsum(0), 1, out=table[1:, 1:])
        tables.append(table.reshape(-1, 3))
        meta.append((offset, w + 1))
        offset += (h + 1) * (w + 1)
    return torch.cat(tables), torch.tensor(meta, dtype=torch.long).reshape(-1, 2)


def _bin_edges(start: torch.Tensor, length: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """Adaptive-average-pooling bins of a window: (N, size) first and past-the-end indices."""
    i = torch.arange(size, device=start.device)
    first = (i * length[:, None]) // size
    last = -((-(i + 1) * length[:, None]) // size)  # ceil division
    return start[:, None] + first, start[:, None] + last


def resample_crops(
    table: torch.Tensor,
    meta: torch.Tensor,
    image_index: torch.Tensor,
    windows: torch.Tensor,
    size: int,
    sizes: torch.Tensor,
    mean: float = 0.0,
    scale: float = 1.0,
) -> torch.Tensor:
    """Area-resample many windows to ``size`` x ``size`` in one go.

    ``table`` and ``meta`` come from :func:`integral_images`, ``sizes`` (B, 2) holds each
    image's height and width; ``windows`` (N, 4) come from :func:`crop_windows`, on images
    ``image_index`` (N,). Pixels outside the image count as zeros. Each output pixel is the
    mean over its adaptive-average-pooling bin, so a window inside the image gives exactly
    ``F.interpolate(crop, size, mode="area")``; the result is then normalised as
    ``(pixel - mean) * scale``. Returns float32 (N, 3, size, size), channels-last.
    """
    n = windows.shape[0]
    if n == 0:
        return torch.zeros(0, 3, size, size).contiguous(memory_format=torch.channels_last)
    offset, width = meta[image_index].unbind(1)
    height, image_width = sizes[image_index].unbind(1)
    x0, y0, x1, y1 = windows.unbind(1)
    xs, xe = _bin_edges(x0, x1 - x0, size)
    ys, ye = _bin_edges(y0, y1 - y0, size)
    factor = scale / ((ye - ys)[:, :, None] * (xe - xs)[:, None, :]).to(torch.float32)
    # Clamping to the image makes everything outside it contribute zero.
    rows = torch.cat([ys, ye], dim=1).clamp_(min=0).minimum(height[:, None])  # (N, 2S)
    cols = torch.cat([xs, xe], dim=1).clamp_(min=0).minimum(image_width[:, None])
    # One gather of the grid of all bin edges, rows (ys, ye) x columns (xs, xe).
    index = (offset[:, None] + rows * width[:, None])[:, :, None] + cols[:, None, :]
    grid = table.index_select(0, index.reshape(-1)).reshape(n, 2 * size, 2 * size, 3)
    s = size
    sums = grid[:, s:, s:] - grid[:, :s, s:] - grid[:, s:, :s] + grid[:, :s, :s]
    out = sums.to(torch.float32).mul_(factor[..., None]).sub_(mean * scale)
    return out.permute(0, 3, 1, 2)
