"""Calibrate the face-presence check of centre-crop fallbacks (siamface.detect.presence).

When MTCNN finds no face, the face pipeline falls back to a centre crop; FacePresence scores
that crop with MTCNN's networks so that a fallback on a non-face can be refused. This script
measures, per scoring method:

positives   LFW View 2 images (``--images``, sampled with ``--seed``) distorted with every
            kind of ``siamface.augment.DISTORTIONS``; only the distorted images in which MTCNN
            finds NO face are kept, since those are the ones a fallback sees. The first
            ``--strong-images`` of them are also distorted twice with the same kind
            ("strong", reported and counted separately) to get more, and harder, misses.
            The clean images' scores are printed as a sanity check.
negatives   ``--non-faces`` images generated in code from ``--seed``: noise (uniform,
            gaussian, salt and pepper), flat colours, linear and radial gradients,
            checkerboards, stripes, smooth blobs, tiny images, and the two photos
            scikit-learn ships (china.jpg, flower.jpg: whole, rescaled, random crops); then
            ``--more-photos`` more, whole and cropped the same way, from the 16 photos
            without people that scikit-image ships (``SKIMAGE_PHOTOS``). Only those in
            which MTCNN finds no face are kept (the check only runs on fallbacks).

``--sets FILE`` keeps the collected positives and negatives (an .npz): a later run with the same
``--seed``, ``--images``, ``--strong-images`` and ``--non-faces`` scores them again without
distorting and detecting (the slow part, about 30 minutes at the defaults on 2 cores); a file
collected with another ``--more-photos`` gets those negatives collected again (a minute).

For each method it prints the pass rate of the positives and the rejection rate of the
negatives at the cut-off, the cut-off range where both are >= ``--target``, and per-kind /
per-family rates for the default method. ``--json FILE`` writes the figures.

Usage (from the repository root; albumentations is needed for the distortions and
scikit-image for ``--more-photos``, both in the dev extra):
    PYTHONPATH=src .venv/bin/python benchmarks/bench_face_presence.py \\
        [--lfw ../shared/data/lfw] [--images 3000] [--strong-images 1000] [--non-faces 600]
        [--more-photos 600] [--sets presence-sets-seed0.npz]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from siamface.augment import DISTORTIONS, distort
from siamface.data.lfw import lfw_image_path, read_view2
from siamface.detect import MTCNN
from siamface.detect.presence import (
    DEFAULT_CUTOFF,
    DEFAULT_WINDOWS,
    LINEAR_MODEL,
    FacePresence,
    grid_windows,
)
from siamface.io import load_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw"


_LOGIT = {"model": {"logit": 1.0}}  # the windows' aggregated logit alone
_RAW = {"contrast": False, "use_rnet": False, "use_pnet": False, **_LOGIT}
_GRID9 = grid_windows((0.45,), (-0.08, 0.0, 0.08))
_FIVE = [(0.45, 0.0, 0.0), (0.45, -0.08, -0.08), (0.45, 0.08, -0.08), (0.45, -0.08, 0.08),
         (0.45, 0.08, 0.08)]
_NO_PNET = {"use_pnet": False, **_LOGIT}

# Scoring methods compared (FacePresence arguments). "default" is the shipped one (side 0.45,
# a 3x3 grid of shifts -0.08, 0, 0.08, contrast raised, O-Net's, R-Net's and P-Net's logits
# averaged per window; the shipped boosted trees on FEATURES); the other rows are what it was
# chosen against, in the order they were tried. Windows are (side, dx, dy) fractions of the
# short side; "raw" = no contrast step, O-Net only; "5" = the centre and its 4 diagonal
# neighbours; "+rnet" / "+pnet" = that network's vote averaged in; all of those score the
# windows' logit alone.
METHODS: dict[str, dict] = {
    "default": {},
    "logit - 15 x spread": {"model": LINEAR_MODEL},
    "logit alone": {**_LOGIT},
    "grid9+contrast+rnet": {**_NO_PNET},
    "raw center-0.8": {"windows": [(0.8, 0.0, 0.0)], **_RAW},
    "raw center-0.45": {"windows": [(0.45, 0.0, 0.0)], **_RAW},
    "raw max-sides-.4/.5/.6": {"windows": [(0.4, 0.0, 0.0), (0.5, 0.0, 0.0), (0.6, 0.0, 0.0)],
                               "aggregate": "max", **_RAW},
    "raw grid9-max": {"windows": _GRID9, "aggregate": "max", **_RAW},
    "raw grid9-mean": {"windows": _GRID9, **_RAW},
    "raw 5-mean": {"windows": _FIVE, **_RAW},
    "5-mean+contrast": {"windows": _FIVE, "use_rnet": False, **_NO_PNET},
    "5-mean+rnet": {"windows": _FIVE, "contrast": False, **_NO_PNET},
    "5-mean+contrast+rnet": {"windows": _FIVE, **_NO_PNET},
}


# ----------------------------------------------------------------------------- positives


def lfw_sample(lfw: Path, n: int, seed: int) -> list[Path]:
    """``n`` distinct images of the View 2 pairs, sampled with ``seed``."""
    refs = sorted({(p.name1, p.index1) for p in read_view2(lfw)}
                  | {(p.name2, p.index2) for p in read_view2(lfw)})
    chosen = random.Random(seed).sample(refs, min(n, len(refs)))
    return [lfw_image_path(lfw, name, index) for name, index in chosen]


def _distort_seed(seed: int, image: int, kind: int, strong: bool) -> int:
    return ((seed * 100_003 + image) * 16 + kind) * 2 + int(strong)


def collect_positives(
    paths: list[Path], detector: MTCNN, seed: int, strong_images: int, batch: int,
    clean_scorers: dict[str, FacePresence],
) -> tuple[dict[str, list[np.ndarray]], dict[str, int], dict[str, np.ndarray]]:
    """Distorted images MTCNN misses, by set name (``kind`` or ``strong:kind``), how many
    images each set was drawn from, and the clean images' scores per method."""
    missed: dict[str, list[np.ndarray]] = {}
    tried: dict[str, int] = {}
    clean: dict[str, list[np.ndarray]] = {name: [] for name in clean_scorers}
    for start in tqdm(range(0, len(paths), batch), desc="LFW positives", unit="batch"):
        images = [load_image(p) for p in paths[start:start + batch]]
        for name, scorer in clean_scorers.items():
            clean[name].append(scorer.score_many(images))
        distorted: list[tuple[str, np.ndarray]] = []
        for offset, image in enumerate(images):
            i = start + offset
            for k, kind in enumerate(DISTORTIONS):
                once = distort(image, kind, seed=_distort_seed(seed, i, k, False))
                distorted.append((kind, once))
                if i < strong_images:
                    twice = distort(once, kind, seed=_distort_seed(seed, i, k, True))
                    distorted.append((f"strong:{kind}", twice))
        found = detector.detect_batch([d for _, d in distorted])
        for (name, image), det in zip(distorted, found, strict=True):
            tried[name] = tried.get(name, 0) + 1
            missed.setdefault(name, [])
            if len(det) == 0:
                missed[name].append(image)
    return missed, tried, {k: np.concatenate(v) for k, v in clean.items()}


# ----------------------------------------------------------------------------- negatives


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """Half LFW-sized (250 x 250), half any size from 24 to 640 a side."""
    if rng.random() < 0.5:
        return 250, 250
    return int(rng.integers(24, 641)), int(rng.integers(24, 641))


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float64)


def _u8(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.clip(np.round(x), 0, 255).astype(np.uint8))


def _maybe_grey(rng: np.random.Generator, h: int, w: int, draw: Callable) -> np.ndarray:
    """``draw((h, w, c))`` with c = 3, or 1 replicated to grey, at random."""
    if rng.random() < 0.3:
        return np.repeat(draw((h, w, 1)), 3, axis=2)
    return draw((h, w, 3))


def _uniform_noise(rng, photos):
    h, w = _size(rng)
    return _u8(_maybe_grey(rng, h, w, lambda s: rng.integers(0, 256, s)))


def _gaussian_noise(rng, photos):
    h, w = _size(rng)
    mean, std = rng.uniform(40, 215), rng.uniform(5, 90)
    return _u8(_maybe_grey(rng, h, w, lambda s: rng.normal(mean, std, s)))


def _salt_pepper(rng, photos):
    h, w = _size(rng)
    image = np.broadcast_to(_colour(rng) if rng.random() < 0.5 else rng.uniform(0, 255),
                            (h, w, 3)).copy()
    density = rng.uniform(0.01, 0.5)
    u = rng.random((h, w))
    image[u < density / 2] = 0
    image[(u >= density / 2) & (u < density)] = 255
    return _u8(image)


def _flat(rng, photos):
    h, w = _size(rng)
    choice = rng.integers(0, 5)
    colour = {0: np.zeros(3), 1: np.full(3, 255.0), 2: np.full(3, 128.0),
              3: np.full(3, rng.uniform(0, 255))}.get(int(choice), _colour(rng))
    return _u8(np.broadcast_to(colour, (h, w, 3)))


def _linear_gradient(rng, photos):
    h, w = _size(rng)
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = x * math.cos(angle) + y * math.sin(angle)
    t = (t - t.min()) / max(np.ptp(t), 1e-9)
    a, b = _colour(rng), _colour(rng)
    return _u8(a + t[..., None] * (b - a))


def _radial_gradient(rng, photos):
    h, w = _size(rng)
    cy, cx = h * rng.uniform(0.3, 0.7), w * rng.uniform(0.3, 0.7)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(y - cy, x - cx) / (rng.uniform(0.3, 1.0) * max(h, w))
    t = np.clip(r, 0, 1) ** rng.uniform(0.5, 2.0)
    a, b = _colour(rng), _colour(rng)
    return _u8(a + t[..., None] * (b - a))


def _checkerboard(rng, photos):
    h, w = _size(rng)
    period = int(rng.integers(1, 65))
    y, x = np.mgrid[0:h, 0:w]
    mask = ((y // period + x // period) % 2).astype(bool)
    a, b = _colour(rng), _colour(rng)
    return _u8(np.where(mask[..., None], a, b))


def _stripes(rng, photos):
    h, w = _size(rng)
    period = rng.uniform(2, 80)
    angle = rng.choice([0.0, math.pi / 2, math.pi / 4, rng.uniform(0, math.pi)])
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = x * math.cos(angle) + y * math.sin(angle)
    if rng.random() < 0.5:
        mask = (np.floor(t / period) % 2)[..., None]  # hard stripes
    else:
        mask = (0.5 + 0.5 * np.sin(2 * math.pi * t / period))[..., None]  # sinusoidal
    a, b = _colour(rng), _colour(rng)
    return _u8(a + mask * (b - a))


def _smooth_blobs(rng, photos):
    h, w = _size(rng)
    coarse = int(rng.integers(2, 17))
    small = rng.random((coarse, coarse, 3 if rng.random() < 0.7 else 1)).astype(np.float32)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image - image.min()
    return _u8(255 * image / max(float(image.max()), 1e-6))


def _tiny(rng, photos):
    h, w = int(rng.integers(1, 17)), int(rng.integers(1, 17))
    content = rng.integers(0, 4)
    if content == 0:
        image = np.zeros((h, w, 3))
    elif content == 1:
        image = np.broadcast_to(_colour(rng), (h, w, 3))
    else:
        image = rng.integers(0, 256, (h, w, 3))
    image = _u8(image)
    if rng.random() < 0.5:  # upscaled to LFW's size
        interp = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        image = cv2.resize(image, (250, 250), interpolation=interp)
    return np.ascontiguousarray(image)


def _photo_variant(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if rng.random() < 0.2:
        grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        image = np.repeat(grey[..., None], 3, axis=2)
    return np.ascontiguousarray(image)


def _photo_whole(rng, photos):
    image = photos[int(rng.integers(len(photos)))]
    f = rng.uniform(0.2, 1.0)
    h, w = image.shape[:2]
    image = cv2.resize(image, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    return _photo_variant(rng, image)


def _photo_crop(rng, photos):
    image = photos[int(rng.integers(len(photos)))]
    h, w = image.shape[:2]
    ch = int(rng.integers(40, min(h, w) + 1))  # (the draws of portrait photos: h > w)
    cw = ch if rng.random() < 0.6 else int(rng.integers(40, w + 1))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = image[top:top + ch, left:left + cw]
    if rng.random() < 0.5:  # to LFW's size, as a face photo would be
        crop = cv2.resize(crop, (250, 250),
                          interpolation=cv2.INTER_AREA if ch > 250 else cv2.INTER_LINEAR)
    return _photo_variant(rng, crop)


# family -> (generator, weight in the mix)
NEGATIVE_FAMILIES: dict[str, tuple[Callable, int]] = {
    "uniform_noise": (_uniform_noise, 1),
    "gaussian_noise": (_gaussian_noise, 1),
    "salt_pepper": (_salt_pepper, 1),
    "flat": (_flat, 1),
    "linear_gradient": (_linear_gradient, 1),
    "radial_gradient": (_radial_gradient, 1),
    "checkerboard": (_checkerboard, 1),
    "stripes": (_stripes, 1),
    "smooth_blobs": (_smooth_blobs, 1),
    "tiny": (_tiny, 1),
    "photo_whole": (_photo_whole, 1),
    "photo_crop": (_photo_crop, 4),
}


def sample_photos() -> list[np.ndarray]:
    """The two photos without people that scikit-learn ships (china.jpg, flower.jpg)."""
    from sklearn.datasets import load_sample_images

    return [np.ascontiguousarray(i, dtype=np.uint8) for i in load_sample_images().images]


# The photos without people that scikit-image ships (skimage.data, inside its wheel): stone,
# grass, gravel, a cat, a clock, coffee, coins, the moon, a galaxy field, a stained tissue
# slide, cells, a motorcycle, a rocket, a retina, printed text.
SKIMAGE_PHOTOS = ("brick", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
                  "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina",
                  "rocket", "text", "cell", "stereo_motorcycle")

# families drawn from those photos (``--more-photos``), same generators, weights as above
MORE_PHOTO_FAMILIES: dict[str, tuple[Callable, int]] = {
    "more_photo_whole": (_photo_whole, 1),
    "more_photo_crop": (_photo_crop, 4),
}


def more_photos() -> list[np.ndarray]:
    """scikit-image's photos without people (:data:`SKIMAGE_PHOTOS`) as RGB uint8."""
    import skimage.data

    out = []
    for name in SKIMAGE_PHOTOS:
        image = getattr(skimage.data, name)()
        image = image[0] if name == "stereo_motorcycle" else image  # (left, right, disparity)
        image = np.asarray(image, dtype=np.uint8)
        out.append(np.ascontiguousarray(np.repeat(image[..., None], 3, axis=2)
                                        if image.ndim == 2 else image[..., :3]))
    return out


def _mixed(n: int, seed: int, families: dict[str, tuple[Callable, int]],
           photos: list[np.ndarray], first_index: int = 0) -> list[tuple[str, np.ndarray]]:
    """``n`` images from ``families`` (shared in proportion to their weights; image i of
    family f drawn from the generator seeded [seed, first_index + f, i])."""
    total = sum(w for _, w in families.values())
    out: list[tuple[str, np.ndarray]] = []
    names = list(families)
    counts = [n * w // total for _, w in families.values()]
    for i in range(n - sum(counts)):  # the remainder, one each from the heaviest
        counts[sorted(range(len(names)), key=lambda j: -families[names[j]][1])[i]] += 1
    for f, (name, count) in enumerate(zip(names, counts, strict=True)):
        make = families[name][0]
        for i in range(count):
            rng = np.random.default_rng([seed, first_index + f, i])
            out.append((name, make(rng, photos)))
    return out


def negative_images(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``n`` non-face images as (family, image), deterministic in ``seed``; families share
    ``n`` in proportion to their weights."""
    return _mixed(n, seed, NEGATIVE_FAMILIES, sample_photos())


def more_negative_images(n: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``n`` more non-faces from scikit-image's photos (:data:`MORE_PHOTO_FAMILIES`),
    deterministic in ``seed`` and independent of :func:`negative_images`."""
    return _mixed(n, seed, MORE_PHOTO_FAMILIES, more_photos(),
                  first_index=len(NEGATIVE_FAMILIES))


# ----------------------------------------------------------------------------- figures


def cutoff_range(pos: np.ndarray, neg: np.ndarray, target: float) -> tuple[float, float]:
    """(low, high): every cut-off c with low < c <= high passes >= target of ``pos``
    (score >= c) and rejects >= target of ``neg`` (score < c); empty when low >= high."""
    fails = math.floor(len(pos) * (1 - target) + 1e-9)
    accepts = math.floor(len(neg) * (1 - target) + 1e-9)
    high = float(np.sort(pos)[min(fails, len(pos) - 1)]) if len(pos) else 1.0
    low = float(np.sort(neg)[::-1][accepts]) if accepts < len(neg) else 0.0
    return low, high


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def middle_cutoff(low: float, high: float) -> float:
    """The middle of (low, high] in logit space (the scores are sigmoid outputs)."""
    return 1 / (1 + math.exp(-(_logit(low) + _logit(high)) / 2))


def calibrated_cutoff(pos: np.ndarray, neg: np.ndarray, target: float) -> float:
    """The middle of the cut-off range where both rates reach ``target``, rounded to as few
    significant digits as keep it inside; the balanced cut-off when the range is empty."""
    low, high = cutoff_range(pos, neg, target)
    if not low < high:
        return balanced_cutoff(pos, neg)[0]
    middle = middle_cutoff(low, high)
    for digits in range(1, 8):
        rounded = float(f"{middle:.{digits}g}")
        if low < rounded <= high:
            return rounded
    return middle


def balanced_cutoff(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """The cut-off among the observed scores that maximises min(pass rate, reject rate)."""
    candidates = np.unique(np.concatenate([pos, neg, [1.0]]))
    pos_s, neg_s = np.sort(pos), np.sort(neg)
    passed = 1 - np.searchsorted(pos_s, candidates, side="left") / max(len(pos), 1)
    rejected = np.searchsorted(neg_s, candidates, side="left") / max(len(neg), 1)
    worst = np.minimum(passed, rejected)
    best = int(np.argmax(worst))
    return float(candidates[best]), float(worst[best])


def rates(pos: np.ndarray, neg: np.ndarray, cutoff: float) -> dict:
    passed, rejected = int((pos >= cutoff).sum()), int((neg < cutoff).sum())
    return {"cutoff": cutoff, "pass": passed, "positives": len(pos),
            "pass_rate": passed / max(len(pos), 1), "reject": rejected,
            "negatives": len(neg), "reject_rate": rejected / max(len(neg), 1)}


def _pct(k: int, n: int) -> str:
    return f"{k}/{n} ({100 * k / max(n, 1):.2f}%)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW folder")
    parser.add_argument("--images", type=int, default=3000,
                        help="LFW View 2 images to distort (default 3000)")
    parser.add_argument("--strong-images", type=int, default=1000,
                        help="of those, how many are also distorted twice (default 1000)")
    parser.add_argument("--non-faces", type=int, default=600,
                        help="non-face images generated (default 600)")
    parser.add_argument("--more-photos", type=int, default=600,
                        help="more non-faces from scikit-image's photos (default 600; 0 = "
                             "none, as before they were added)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.99,
                        help="pass and reject rate the cut-off range must reach (default 0.99)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated scoring methods, from {', '.join(METHODS)}; "
                             "the first gets the per-kind figures")
    parser.add_argument("--batch", type=int, default=4, help="LFW images per MTCNN batch")
    parser.add_argument("--timed", type=int, default=200,
                        help="clean LFW images timed one at a time with score() (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--sets", type=Path, default=None,
                        help="an .npz of the collected sets: read when it exists (for the "
                             "same seed and sizes), else written after collecting")
    return parser.parse_args(argv)


_SET_ARGS = ("seed", "images", "strong_images", "non_faces")


def save_sets(path: Path, args: argparse.Namespace, missed: dict[str, list[np.ndarray]],
              tried: dict[str, int], kept_neg: list[tuple[str, np.ndarray]],
              detected_neg: dict[str, int], generated: int) -> None:
    """The collected sets as one .npz (written to a temporary name, then renamed)."""
    arrays = {f"pos|{name}|{i}": im for name, ims in missed.items() for i, im in enumerate(ims)}
    arrays.update({f"neg|{family}|{i}": im for i, (family, im) in enumerate(kept_neg)})
    meta = {"args": {k: getattr(args, k) for k in _SET_ARGS}, "tried": tried,
            "detected_neg": detected_neg, "negatives_generated": generated,
            "more_photos": args.more_photos}
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)


def load_sets(path: Path, args: argparse.Namespace):
    """(missed, tried, kept_neg, detected_neg, generated) as :func:`save_sets` wrote them;
    refuses a file collected with other settings."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        want = {k: getattr(args, k) for k in _SET_ARGS}
        if meta["args"] != want:
            raise SystemExit(f"{path} holds sets for {meta['args']}, not {want}")
        missed: dict[str, list[np.ndarray]] = {name: [] for name in meta["tried"]}
        kept_neg: list[tuple[str, np.ndarray]] = []
        keys = [k for k in data.files if k != "meta"]
        for key in sorted(keys, key=lambda k: (k.split("|")[0], int(k.rsplit("|", 1)[1]))):
            kind, name, _ = key.split("|")
            if kind == "pos":
                missed[name].append(data[key])
            else:
                kept_neg.append((name, data[key]))
    more = meta.get("more_photos", 0)
    return (missed, meta["tried"], kept_neg, meta["detected_neg"], meta["negatives_generated"],
            more)


def keep_non_faces(negatives: list[tuple[str, np.ndarray]], detector: MTCNN,
                   detected: dict[str, int]) -> list[tuple[str, np.ndarray]]:
    """The negatives in which MTCNN finds no face; counts the others in ``detected``."""
    kept = []
    for family, image in tqdm(negatives, desc="non-faces", unit="img"):
        if len(detector.detect(image)):
            detected[family] = detected.get(family, 0) + 1
        else:
            kept.append((family, image))
    return kept


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.lfw / "pairs.txt").is_file():
        print(f"LFW not found at {args.lfw}", file=sys.stderr)
        return 2
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        print(f"unknown method(s) {unknown}; valid: {', '.join(METHODS)}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    detector = MTCNN()
    scorers = {m: FacePresence(**METHODS[m]) for m in methods}

    paths = lfw_sample(args.lfw, args.images, args.seed)
    t0 = time.perf_counter()
    if args.sets is not None and args.sets.is_file():
        missed, tried, kept_neg, detected_neg, generated, more = load_sets(args.sets, args)
        if more != args.more_photos:  # collect (only) the scikit-image families again
            kept_neg = [(f, im) for f, im in kept_neg if f not in MORE_PHOTO_FAMILIES]
            detected_neg = {f: k for f, k in detected_neg.items()
                            if f not in MORE_PHOTO_FAMILIES}
            generated -= more
            extra = more_negative_images(args.more_photos, args.seed)
            kept_neg += keep_non_faces(extra, detector, detected_neg)
            generated += len(extra)
            save_sets(args.sets, args, missed, tried, kept_neg, detected_neg, generated)
        clean = {m: np.concatenate([scorer.score_many([load_image(p) for p in
                                                       paths[i:i + 64]])
                                    for i in range(0, len(paths), 64)])
                 for m, scorer in scorers.items()}
        print(f"sets read from {args.sets}")
        t_pos, t_neg = time.perf_counter() - t0, 0.0
    else:
        missed, tried, clean = collect_positives(paths, detector, args.seed,
                                                 args.strong_images, args.batch, scorers)
        t_pos = time.perf_counter() - t0
        t0 = time.perf_counter()
        negatives = (negative_images(args.non_faces, args.seed)
                     + more_negative_images(args.more_photos, args.seed))
        generated = len(negatives)
        detected_neg: dict[str, int] = {}
        kept_neg = keep_non_faces(negatives, detector, detected_neg)
        t_neg = time.perf_counter() - t0
        if args.sets is not None:
            save_sets(args.sets, args, missed, tried, kept_neg, detected_neg, generated)

    standard = list(DISTORTIONS)
    strong = [f"strong:{k}" for k in DISTORTIONS if f"strong:{k}" in tried]
    print(f"\nLFW: {len(paths)} View 2 images (seed {args.seed}), each distorted with every "
          f"kind; the first {min(args.strong_images, len(paths))} also distorted twice "
          f"(strong). Positives = distorted images in which MTCNN finds no face:")
    for name in standard + strong:
        print(f"  {name:<22} missed {_pct(len(missed[name]), tried[name])}")
    print(f"Non-faces: {generated} generated; MTCNN found a 'face' in "
          f"{sum(detected_neg.values())} ({detected_neg or 'none'}); {len(kept_neg)} kept.")

    # Scores of every set, per method.
    t0 = time.perf_counter()
    neg_images = [im for _, im in kept_neg]
    neg_family = np.array([f for f, _ in kept_neg])
    scores: dict[str, dict[str, np.ndarray]] = {}
    for m, scorer in tqdm(scorers.items(), desc="scoring", unit="method"):
        scores[m] = {name: scorer.score_many(missed[name]) for name in standard + strong}
        scores[m]["negatives"] = scorer.score_many(neg_images)
    t_score = time.perf_counter() - t0
    n_scored = sum(len(missed[n]) for n in standard + strong) + len(neg_images)

    # score() one image at a time, on clean LFW images (decoding not timed).
    timed = [load_image(p) for p in paths[: args.timed]]
    single_ms: dict[str, float] = {}
    for m, scorer in scorers.items():
        scorer.score(timed[0]) if timed else None
        t0 = time.perf_counter()
        for image in timed:
            scorer.score(image)
        single_ms[m] = 1e3 * (time.perf_counter() - t0) / max(len(timed), 1)

    def positives(m: str, names: list[str]) -> np.ndarray:
        return np.concatenate([scores[m][n] for n in names]) if names else np.zeros(0)

    report: dict = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "default_windows": [list(w) for w in DEFAULT_WINDOWS],
        "default_cutoff": DEFAULT_CUTOFF,
        "missed": {n: len(missed[n]) for n in standard + strong},
        "tried": {n: tried[n] for n in standard + strong},
        "negatives_generated": generated,
        "negatives_detected_by_mtcnn": detected_neg,
        "negatives_kept": len(kept_neg),
        "methods": {},
    }
    target = args.target
    print(f"\nPer method: positives pass when score >= cut-off, non-faces are rejected when "
          f"score < cut-off; range = cut-offs where both rates >= {target:.0%} "
          f"('standard' = single distortions, '+strong' adds the double ones); "
          f"balanced = the cut-off maximising the lower of the two rates.")
    print(f"{'method':<24}{'ms/img':>7}{'clean p1':>9}"
          f"{'range, standard':>22}{'balanced, standard':>22}"
          f"{'range, +strong':>22}{'balanced, +strong':>22}")
    for m in methods:
        std, both = positives(m, standard), positives(m, standard + strong)
        neg = scores[m]["negatives"]
        entry: dict = {"windows": len(scorers[m].windows), "args": repr(scorers[m]),
                       "ms_per_image_single": single_ms[m],
                       "clean_quantiles": {str(q): float(np.quantile(clean[m], q))
                                           for q in (0.001, 0.01, 0.05, 0.5)}}
        cells = []
        for label, pos in (("standard", std), ("standard+strong", both)):
            low, high = cutoff_range(pos, neg, target)
            bal, bal_rate = balanced_cutoff(pos, neg)
            cal = calibrated_cutoff(pos, neg, target)
            entry[label] = {"range": [low, high], "feasible": low < high, "calibrated": cal,
                            "balanced": [bal, bal_rate], "at_calibrated": rates(pos, neg, cal),
                            "at_default_cutoff": rates(pos, neg, DEFAULT_CUTOFF)}
            cells.append(f"({low:.4f}, {high:.4f}]" + ("" if low < high else "x"))
            cells.append(f"{bal:.4f} ({bal_rate:.2%})")
        report["methods"][m] = entry
        print(f"{m:<24}{single_ms[m]:>7.2f}{np.quantile(clean[m], 0.01):>9.4f}"
              + "".join(f"{c:>22}" for c in cells))
    print("  (x: empty range, the target cannot be met on both sides)")

    first = methods[0]
    cuts = {"DEFAULT_CUTOFF": DEFAULT_CUTOFF,
            "calibrated (standard)": report["methods"][first]["standard"]["calibrated"]}
    print(f"\n{first} ({scorers[first]!r}):")
    per_kind: dict = {}
    per_family: dict = {}
    for label, cut in cuts.items():
        r = rates(positives(first, standard), scores[first]["negatives"], cut)
        r2 = rates(positives(first, strong), scores[first]["negatives"], cut)
        print(f"  at {label} = {cut:g}:")
        print(f"    distorted misses pass   {_pct(r['pass'], r['positives'])}")
        if strong:
            print(f"    strong misses pass      {_pct(r2['pass'], r2['positives'])}")
        print(f"    non-faces rejected      {_pct(r['reject'], r['negatives'])}")
        print(f"    clean LFW images pass   "
              f"{_pct(int((clean[first] >= cut).sum()), len(clean[first]))}")
        per_kind[label] = {}
        for name in standard + strong:
            s = scores[first][name]
            k = int((s >= cut).sum())
            per_kind[label][name] = [k, len(s)]
            low = f", lowest {s.min():.4f}" if len(s) else ""
            print(f"      {name:<22} pass {_pct(k, len(s))}{low}")
        per_family[label] = {}
        neg = scores[first]["negatives"]
        for family in [*NEGATIVE_FAMILIES, *MORE_PHOTO_FAMILIES]:
            s = neg[neg_family == family]
            k = int((s < cut).sum())
            per_family[label][family] = [k, len(s)]
            top = f", highest {s.max():.4f}" if len(s) else ""
            print(f"      {family:<22} reject {_pct(k, len(s))}{top}")
    report["cutoffs"] = cuts
    report["per_kind_pass"] = per_kind
    report["per_family_reject"] = per_family
    report["scores"] = {first: {n: [round(float(v), 6) for v in s]
                                for n, s in scores[first].items()},
                        "negative_families": neg_family.tolist()}

    total = time.perf_counter() - t_start
    ms = 1e3 * t_score / max(n_scored * len(methods), 1)
    print(f"\nTime: total {total:.0f} s (positives {t_pos:.0f} s, non-faces {t_neg:.0f} s, "
          f"scoring {t_score:.1f} s = {ms:.2f} ms/image/method batched); score() one image "
          f"at a time: {single_ms[first]:.2f} ms ({first}); {args.threads} torch thread(s)")
    report["seconds"] = {"total": total, "positives": t_pos, "negatives": t_neg,
                         "scoring": t_score}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
