"""Restoring an aligned chip before it is embedded, only where a gate says it is damaged.

The detection retries (:mod:`siamface.detect.restore`) restore a copy of the image to find a
face, and the chip is still cut from the original. A chip restoration changes the chip itself,
so it runs only where a gate measured on the chip fires; on clean faces it changes nothing.

==========  ====================================================================================
name        gate and restoration
==========  ====================================================================================
denoise     Immerkaer's noise estimate on the chip's central two thirds above
            :data:`NOISE_GATE` grey levels, then a Gaussian blur as wide as the
            noise is strong (:func:`denoise_chip`)
derain      thin near-vertical bright streaks (:func:`rain_streaks`) above
            :data:`RAIN_GATE`, then a grey opening over 3 pixels
            (:func:`siamface.detect.restore.derain`)
==========  ====================================================================================

Measured with ``benchmarks/bench_chip_restore.py`` (shipped model, LFW View 2 fold 0, second
chip distorted at severity 4): the noise estimate's maximum is 1.3 on clean chips, 6.4 under
low light, 1.9 under rain and at most 0.6 under the other kinds, and its minimum is 27 under
noise; the denoising blur takes noise from 86.5% to 96.8% (a 3x3 median, the first version:
92.3%) and leaves clean pairs unchanged.

Fog has no such chip feature (at 1% of clean chips flagged, hand-made haze measures catch 19-47%
of severity-4 fog), but the face's embedding shows it: an :class:`EmbeddingGate` is a linear
score on the embedding, fitted per model (:func:`fit_dehaze_gate`) and stored in its checkpoint.
A face whose score passes the gate's cutoff is embedded again from its dehazed chip
(:func:`apply_gates`; ``restored="dehaze"``), so it costs a second pass only there. On the
shipped model, fitted on 1,032 held-out LFW faces of people outside View 2 fold 0
(``scripts/fit_fog_gate.py``) and measured on that fold (``benchmarks/bench_chip_restore.py
--restorations none,gated``): the gate fires on 0.7% of clean chips, 91% of severity-4 fog
and at most 2.3% of the other kinds (noise, after denoising: the result then says
``denoise+dehaze``); fog goes from 76.0% to 93.5% and clean pairs keep 99.17%. The rain gate
takes rain from 95.5% to 96.8% on the same pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from siamface.errors import ConfigError, UnknownNameError

__all__ = ["CHIP_RESTORATIONS", "DEFAULT_CHIP_RESTORE", "EMBEDDING_RESTORATIONS", "NOISE_GATE",
           "RAIN_GATE", "VERSION", "EmbeddingGate", "apply_gates", "check_chip_restore",
           "denoise_chip", "fit_dehaze_gate", "gates_from_preprocessing", "noise_sigma",
           "rain_streaks", "restore_chip"]

# Raise with any change that can change a restored chip: it goes into the crop cache's key.
VERSION = 3
NOISE_GATE = 8.0
# rain_streaks() above this: on LFW chips 0.6% of clean ones, 93% / 99.7% / 100% of rain at
# severities 3 / 4 / 5, at most 0.3% of the other kinds except noise (12%, denoised first)
RAIN_GATE = 0.008
RAIN_STREAK_LEVEL = 10  # grey levels a thin streak stands above its neighbours
# the denoising blur's width in pixels: sigma / 13, at least 1.5 and at most 3 (measured: the
# best width on LFW fold 0 was 1.5 at noise severities 2-3, 2.5 at 4 and 3 at 5)
DENOISE_BLUR_PER_LEVEL = 1 / 13
DENOISE_BLUR_RANGE = (1.5, 3.0)
CHIP_RESTORATIONS = ("denoise", "derain")
DEFAULT_CHIP_RESTORE: tuple[str, ...] = ("denoise", "derain")
EMBEDDING_RESTORATIONS = ("dehaze",)
GATE_CLEAN_RATE = 0.01  # the share of clean validation faces a fitted gate may flag

_LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def noise_sigma(chip: np.ndarray) -> float:
    """Immerkaer's (1996) fast estimate of additive noise, in grey levels, on the central two
    thirds of the chip (the face, not the background)."""
    grey = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY).astype(np.float64)
    margin = grey.shape[0] // 6
    if margin:
        grey = grey[margin:-margin, margin:-margin]
    response = cv2.filter2D(grey, -1, _LAPLACIAN_DIFFERENCE)[1:-1, 1:-1]
    if response.size == 0:
        return 0.0
    return float(np.sqrt(np.pi / 2) * np.abs(response).mean() / 6.0)


def check_chip_restore(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, refusing unknown and repeated ones."""
    names = tuple(names)
    for name in names:
        if name not in CHIP_RESTORATIONS:
            raise UnknownNameError("chip restoration", name, CHIP_RESTORATIONS)
    if len(set(names)) != len(names):
        raise ConfigError(f"chip restorations must not repeat, got {list(names)}")
    return names


def restore_chip(chip: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, str | None]:
    """(chip, what restored it): the first restoration of ``names`` whose gate fires applied to
    a uint8 (S, S, 3) RGB chip, or the chip itself and None when no gate fires."""
    for name in names:
        if name == "denoise":
            sigma = noise_sigma(chip)
            if sigma > NOISE_GATE:
                return denoise_chip(chip, sigma), name
        elif name == "derain":
            if rain_streaks(chip) > RAIN_GATE:
                from siamface.detect.restore import derain

                return derain(chip), name
        else:
            raise UnknownNameError("chip restoration", name, CHIP_RESTORATIONS)
    return chip, None


def rain_streaks(chip: np.ndarray) -> float:
    """How much more of the chip's central part lies on thin, near-vertical bright streaks
    (narrower than 3 pixels across, :data:`RAIN_STREAK_LEVEL` grey levels above their sides)
    than on thin horizontal ones: rain falls, while a face's thin bright details (eye glints,
    the edges of teeth and glasses) run either way."""
    grey = cv2.cvtColor(np.ascontiguousarray(chip), cv2.COLOR_RGB2GRAY)
    side = grey.shape[0]
    centre = slice(round(side * 0.13), side - round(side * 0.13))
    across = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, np.ones((1, 3), np.uint8))
    along = cv2.morphologyEx(grey, cv2.MORPH_TOPHAT, np.ones((3, 1), np.uint8))
    vertical = (across[centre, centre] > RAIN_STREAK_LEVEL).mean()
    horizontal = (along[centre, centre] > RAIN_STREAK_LEVEL).mean()
    return float(vertical - horizontal)


def denoise_chip(chip: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur whose width follows the noise estimate ``sigma`` (grey levels):
    :data:`DENOISE_BLUR_PER_LEVEL` pixels per grey level, within :data:`DENOISE_BLUR_RANGE`."""
    low, high = DENOISE_BLUR_RANGE
    width = float(np.clip(sigma * DENOISE_BLUR_PER_LEVEL, low, high))
    return cv2.GaussianBlur(np.ascontiguousarray(chip), (0, 0), width)


@dataclass(frozen=True)
class EmbeddingGate:
    """``restore`` the chip of a face whose embedding ``e`` scores ``e @ weight + bias`` above
    ``cutoff``, and embed it again."""

    restore: str
    weight: np.ndarray
    bias: float
    cutoff: float

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        return np.asarray(embeddings, np.float64) @ self.weight + self.bias

    def to_dict(self) -> dict[str, Any]:
        return {"restore": self.restore, "weight": [float(v) for v in self.weight],
                "bias": float(self.bias), "cutoff": float(self.cutoff)}

    @classmethod
    def from_dict(cls, data: Any, embedding_dim: int | None = None) -> EmbeddingGate:
        if not isinstance(data, dict):
            raise TypeError(f"an embedding gate must be a mapping, got {data!r}")
        if data.get("restore") not in EMBEDDING_RESTORATIONS:
            raise UnknownNameError("embedding gate restoration", str(data.get("restore")),
                                   EMBEDDING_RESTORATIONS)
        weight = np.asarray(data["weight"], np.float64)
        if weight.ndim != 1 or not np.isfinite(weight).all():
            raise ValueError("an embedding gate's weight must be a list of finite numbers")
        if embedding_dim is not None and len(weight) != embedding_dim:
            raise ValueError(f"an embedding gate's weight has {len(weight)} values for "
                             f"{embedding_dim}-d embeddings")
        bias, cutoff = float(data["bias"]), float(data["cutoff"])
        if not (np.isfinite(bias) and np.isfinite(cutoff)):
            raise ValueError("an embedding gate's bias and cutoff must be finite")
        return cls(str(data["restore"]), weight, bias, cutoff)


def gates_from_preprocessing(preprocessing: dict[str, Any],
                             embedding_dim: int | None = None) -> tuple[EmbeddingGate, ...]:
    """The embedding gates a checkpoint's preprocessing describes (``embedding_gates``)."""
    data = preprocessing.get("embedding_gates", [])
    if not isinstance(data, list):
        raise TypeError(f"preprocessing.embedding_gates must be a list, got {data!r}")
    return tuple(EmbeddingGate.from_dict(g, embedding_dim) for g in data)


def _restore_for_gate(chip: np.ndarray, name: str) -> np.ndarray:
    from siamface.detect.restore import restore

    return restore(chip, name)


def apply_gates(
    embed: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], chips: np.ndarray,
    embeddings: np.ndarray, logits: np.ndarray, gates: Sequence[EmbeddingGate],
    restored: Sequence[str | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str | None]]:
    """(chips, embeddings, logits, restored) after the gates: each face not restored yet whose
    embedding passes a gate gets its chip restored and ``embed(chips)`` (the model's
    (embeddings, logits)) run again on it; the rest are returned as they were."""
    chips, embeddings, logits = np.array(chips), np.array(embeddings), np.array(logits)
    restored = [None] * len(chips) if restored is None else list(restored)
    for gate in gates:
        if not len(chips):
            break
        fire = [i for i in np.flatnonzero(gate.scores(embeddings) > gate.cutoff)
                if restored[i] is None]
        if not fire:
            continue
        chips[fire] = np.stack([_restore_for_gate(chips[i], gate.restore) for i in fire])
        embeddings[fire], logits[fire] = embed(chips[fire])
        for i in fire:
            restored[i] = gate.restore
    return chips, embeddings, logits, restored


def fit_dehaze_gate(embed: Callable[[np.ndarray], np.ndarray], chips: np.ndarray, *,
                    severities: Sequence[int] = (3, 4), clean_rate: float = GATE_CLEAN_RATE,
                    chip_restore: Sequence[str] = (), seed: int = 0) -> EmbeddingGate:
    """The fog gate of a model whose ``embed(chips)`` gives (N, D) embeddings, fitted on the
    clean chips ``chips`` (faces the model was not trained on, e.g. its validation images):
    a logistic regression of fogged copies (``siamface.augment`` fog at ``severities``) against
    the clean chips and copies under the other distortion kinds (restored by ``chip_restore``
    as the pipeline restores them), with the cutoff that flags ``clean_rate`` of the clean
    chips."""
    from sklearn.linear_model import LogisticRegression

    from siamface.augment import DISTORTIONS, distort

    chips = np.asarray(chips)
    if len(chips) < 50:
        raise ValueError(f"fitting a fog gate needs at least 50 faces, got {len(chips)}")
    others = [k for k in DISTORTIONS if k != "fog"]
    levels = [int(s) for s in severities]
    rng = np.random.default_rng(seed)
    seeds = rng.integers(2**31, size=(len(chips), 2))
    fog = np.stack([distort(c, "fog", seed=int(s[0]), severity=levels[i % len(levels)])
                    for i, (c, s) in enumerate(zip(chips, seeds))])
    other = np.stack([distort(c, others[i % len(others)], seed=int(s[1]),
                              severity=levels[i % len(levels)])
                      for i, (c, s) in enumerate(zip(chips, seeds))])
    if chip_restore:
        other = np.stack([restore_chip(c, chip_restore)[0] for c in other])
    clean_e, fog_e, other_e = embed(chips), embed(fog), embed(other)
    x = np.concatenate([clean_e, other_e, fog_e]).astype(np.float64)
    y = np.r_[np.zeros(len(clean_e) + len(other_e)), np.ones(len(fog_e))]
    lr = LogisticRegression(C=1.0, max_iter=2000).fit(x, y)
    gate = EmbeddingGate("dehaze", lr.coef_[0].astype(np.float64), float(lr.intercept_[0]), 0.0)
    cutoff = float(np.quantile(gate.scores(clean_e), 1.0 - clean_rate))
    return EmbeddingGate(gate.restore, gate.weight, gate.bias, cutoff)
