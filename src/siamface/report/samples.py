"""The visual samples: one tile per scored pair, both crops side by side, under them the
predicted genders, the verdict (green when right, red when wrong, grey when there is none),
the distance, the truth and the distortion kind. Pure PIL; any chip size."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["order_samples", "samples_png", "verdict_label"]

_GREEN = (20, 140, 60)
_RED = (190, 30, 30)
_GREY = (110, 110, 110)
_TEXT = (40, 40, 40)
_BORDER = (215, 215, 215)
_MIN_CHIP, _MAX_CHIP = 112, 224


def order_samples(samples: Iterable, errors_first: bool) -> list:
    """``samples`` as a list; with ``errors_first`` the ones that are not right (a wrong
    verdict, or no verdict at all) come first. Stable: the order within each part is kept."""
    samples = list(samples)
    if not errors_first:
        return samples
    return [s for s in samples if not s.correct] + [s for s in samples if s.correct]


def verdict_label(sample) -> str:
    """MATCH, NO MATCH, or NO VERDICT (a face was absent)."""
    if sample.predicted is None:
        return "NO VERDICT"
    return "MATCH" if sample.predicted else "NO MATCH"


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def _chip(array: np.ndarray, size: int) -> Image.Image:
    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        return Image.new("RGB", (size, size), (235, 235, 235))
    return Image.fromarray(np.ascontiguousarray(a)).resize((size, size), Image.BILINEAR)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis so that it is at most ``width`` pixels wide."""
    text = str(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "\u2026", font=font) > width:
        text = text[:-1]
    return text + "\u2026"


def _display_size(samples: Sequence) -> int:
    sizes = [max(np.asarray(c).shape[:2] or (0,)) for s in samples for c in (s.chip_a, s.chip_b)]
    return int(min(max(max(sizes, default=_MIN_CHIP), _MIN_CHIP), _MAX_CHIP))


def samples_png(samples_or_evaluation, *, columns: int = 4) -> bytes:
    """The tiles of ``evaluation.samples`` (or of a list of
    :class:`~siamface.evaluation.result.SamplePair`), ``columns`` a row, in the order given,
    as PNG bytes. Chips are shown at their own size, clamped to 112..224 pixels.
    ``ValueError`` when there are no samples."""
    samples = list(getattr(samples_or_evaluation, "samples", samples_or_evaluation))
    if not samples:
        raise ValueError("no samples to draw")
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    size = _display_size(samples)
    pad = max(6, size // 16)
    body = max(11, size // 11)
    big = max(14, size // 8)
    line = int(body * 1.35)
    fonts = {"body": _font(body), "big": _font(big), "small": _font(max(10, body - 2))}
    tile_w = 2 * size + 3 * pad
    tile_h = pad + line + size + pad + line + int(big * 1.4) + 3 * line + pad
    cols = min(columns, len(samples))
    rows = math.ceil(len(samples) / cols)
    canvas = Image.new("RGB", (cols * tile_w + pad, rows * tile_h + pad), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for n, sample in enumerate(samples):
        x0 = pad + (n % cols) * tile_w
        y0 = pad + (n // cols) * tile_h
        _tile(canvas, draw, sample, x0, y0, tile_w - pad, tile_h - pad, size, pad, line, big,
              fonts)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", compress_level=3)  # optimize=True took ~1 s
    return buffer.getvalue()


def _tile(canvas, draw, sample, x0, y0, w, h, size, pad, line, big, fonts) -> None:
    draw.rectangle([x0, y0, x0 + w - 1, y0 + h - 1], outline=_BORDER, width=1)
    y = y0 + pad // 2
    for i, (name, chip, gender) in enumerate(((sample.name_a, sample.chip_a, sample.gender_a),
                                             (sample.name_b, sample.chip_b, sample.gender_b))):
        x = x0 + pad + i * (size + pad)
        draw.text((x, y), _fit(draw, name or "", fonts["small"], size), fill=_GREY,
                  font=fonts["small"])
        canvas.paste(_chip(chip, size), (x, y + line))
        label = gender if gender else "gender: n/a"
        draw.text((x, y + line + size + pad // 2), _fit(draw, label, fonts["body"], size),
                  fill=_TEXT, font=fonts["body"])
    y += line + size + pad // 2 + line
    colour = _GREY if sample.predicted is None else _GREEN if sample.correct else _RED
    text_w = w - 2 * pad
    x = x0 + pad
    draw.text((x, y), verdict_label(sample), fill=colour, font=fonts["big"])
    y += int(big * 1.4)
    distance = sample.distance
    if distance is None or not math.isfinite(float(distance)):
        measured = "no distance (a face is absent)"
    else:
        measured = f"distance {float(distance):.3f}"
    truth = "truth: same person" if sample.same else "truth: different people"
    lines = [measured, truth]
    if sample.kind and sample.kind != "none":
        lines.append(f"distortion: {sample.kind}")
    for text in lines:
        draw.text((x, y), _fit(draw, text, fonts["body"], text_w), fill=_TEXT,
                  font=fonts["body"])
        y += line
