"""Pictures of results (pure image composition; callers decide where to write them)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["verdict_text", "verification_figure"]

_GREEN = (20, 140, 60)
_RED = (190, 30, 30)
_GREY = (110, 110, 110)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def verdict_text(result) -> str:
    """MATCH, NO MATCH, or which image has no face ("NO FACE in A", "... in A and B")."""
    if result.status.startswith("no_face"):
        where = {"no_face_a": "A", "no_face_b": "B", "no_face_both": "A and B"}[result.status]
        return f"NO FACE in {where}"
    return "MATCH" if result.is_match else "NO MATCH"


def verification_figure(result, chip_size: int = 220) -> np.ndarray:
    """Both crops side by side with predicted genders, MATCH / NO MATCH and the distance,
    as the reference demo showed. Returns an RGB uint8 array."""
    margin, header, footer = 16, 56, 44
    width = 2 * chip_size + 3 * margin
    height = header + chip_size + footer + margin
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    verdict = verdict_text(result)
    colour = _GREEN if result.is_match else _RED if result.is_match is False else _GREY
    draw.text((margin, 8), verdict, fill=colour, font=_font(26))
    measured = ("no verdict" if result.distance is None
                else f"distance {result.distance:.3f}")
    draw.text((margin, 36), f"{measured}  threshold {result.threshold:.3f}",
              fill=(40, 40, 40), font=_font(14))
    for i, face in enumerate((result.a, result.b)):
        x = margin + i * (chip_size + margin)
        chip = Image.fromarray(face.chip).resize((chip_size, chip_size), Image.BILINEAR)
        canvas.paste(chip, (x, header))
        if not face.has_face:
            label = "no face"
        elif face.gender is not None:
            label = f"{face.gender.label} {face.gender.probability:.0%}"
        else:
            label = "gender: no trained head"
        if not face.detected and face.has_face:
            label += "  (no face detected, centre crop)"
        draw.text((x, header + chip_size + 8), label, fill=(40, 40, 40), font=_font(14))
    return np.asarray(canvas)
