"""Is there a face where a centre-crop fallback looks? MTCNN's networks as a face-presence check.

When MTCNN finds no face, :class:`siamface.faces.FacePipeline` falls back to the centred
square of 80% of the short side. ``FacePresence().score(image)`` is the face probability of
that region, from the three networks MTCNN already ships
(:func:`siamface.detect.nets.load_networks`):

* windows: O-Net is a 48x48 classifier trained on tight face boxes, so the whole 80% square
  scores a centred LFW face near 0 (median 0.02); the windows are squares of ``side`` times
  the short side, centred at the image centre moved by (dx, dy) times the short side
  (default: side 0.45, the 3x3 grid of shifts -0.08, 0, +0.08, all inside the fallback
  square), cropped and area-resampled to 48x48 exactly as MTCNN crops its O-Net input
  (:func:`siamface.detect.boxes.resample_crops`, RGB, ``(x - 127.5) * 0.0078125``, NCHW).
* contrast: each crop is shifted to mean grey and its contrast raised (never lowered)
  towards a standard deviation of ``CONTRAST_TARGET`` in O-Net units, by at most
  ``CONTRAST_GAIN``: a fogged, dark or washed-out face looks more like a face again, and a
  flat image stays flat.
* networks: each window's logit is the mean of O-Net's (48x48 crop), R-Net's (24x24 crop of
  the same window) and P-Net's (12x12 crop: its one output cell).
* features (:data:`FEATURES`): the windows' mean logit (a face scores high in every window; a
  texture that fools the networks in one window rarely does in all); the landmark spread
  (O-Net places five landmarks in each window, and on a face they land on the same image
  points whichever window looks, median spread 0.115 of the window side on distorted LFW
  misses, while on textures they wander, 0.16-0.22); the side of the box O-Net's regression
  makes of each window; how far below the eyes it puts the mouth; and the crops' contrast
  before the contrast step. All come from the one pass of each network.
* model: boosted trees (:mod:`siamface.detect.trees`, shipped in ``assets/`` as
  ``face-presence.safetensors``; 200 trees of depth 3, the score only rises with the logit and
  only falls with the spread) turn the features into the face probability.

A face that fills the whole image is too big for the windows: of 150 LFW photos cropped to
MTCNN's own face box 32% pass (the linear score before the trees: 87%), with 1.2x that box
98.7%, with 1.5x or 2x 99.3%. Images of tightly pre-cropped faces want
``fallback_policy="always"``.

``score >= DEFAULT_CUTOFF`` means "a face is there". Fitting and calibration
(scripts/fit_face_presence.py on sets benchmarks/bench_face_presence.py collects): five draws
(seeds 0-4) of LFW View 2 images distorted by every ``siamface.augment`` kind, once and twice,
keeping those MTCNN misses (1,148 single, 2,948 double), and of generated and natural
non-face images MTCNN also misses (8,369: noise, flat colours, gradients, patterns, blobs, tiny
images, scikit-learn's two photos and scikit-image's sixteen without people, whole and cropped).
Each draw is scored by trees fitted on the other four; the cut-off 0.323 is the middle (in logit
space) of the range where the pooled held-out rates both reach 99%: 1,138/1,148 single misses
(99.13%) pass and 8,312/8,369 non-faces (99.32%) are rejected, per draw 97.4-99.6% and
99.05-99.50%. On two further draws never used (seeds 5 and 6) the shipped trees pass 343/346
(99.13%; 98.28% and 100%) and reject 3,558/3,576 (99.50%); the linear score they replace
(logit less 15 x spread, cut-off 0.0043) passes 344/346 there but rejects only 97.62%. All
clean LFW images of every draw pass.

The module is pure: it reads no files but the MTCNN weights and the trees, and writes
nothing. Everything but the network calls is numpy; :class:`siamface.ort.OnnxFacePresence` runs the same code with
the networks in ONNX Runtime.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from siamface.detect.cascade import (
    CROPS_PER_CALL,
    MEAN,
    SCALE,
    in_chunks,
    integral_images,
    resample_crops,
    sigmoid,
)
from siamface.detect.trees import TreeEnsemble

if TYPE_CHECKING:
    from siamface.detect.nets import ONet, PNet, RNet

__all__ = ["AGGREGATES", "DEFAULT_CUTOFF", "DEFAULT_WINDOWS", "FEATURES", "LINEAR_MODEL",
           "FacePresence", "grid_windows", "shipped_model"]

_CROPS_PER_RESAMPLE = 512  # crops resampled at once (bounds memory for long lists)
# A covered region longer than this (pixels) is shrunk first (INTER_AREA): the windows end up
# 48 pixels a side anyway, and it bounds the cost of the integral image on huge photos.
_MAX_REGION = 480
_EPS = 1e-7

CONTRAST_TARGET = 0.35  # crop standard deviation aimed at, in O-Net input units ([-1, 1])
CONTRAST_GAIN = 4.0  # the most a crop's contrast is multiplied by
AGGREGATES = ("mean", "max")

# What the score is made of, per image (FacePresence.features):
#   logit         the windows' face logits (each the mean of O-Net's, R-Net's and P-Net's),
#                 combined by the aggregate (mean or max)
#   spread        how far O-Net's five landmarks move across the windows (image points, over
#                 the mean window side)
#   box_size      the side of the square O-Net's box regression makes of each window, over
#                 the window side, mean over the windows
#   mouth_drop    the mouth corners' height below the eyes in O-Net's landmarks, a fraction
#                 of the window side, mean over the windows
#   log_contrast  log(0.001 + the crops' standard deviation before the contrast step, in
#                 O-Net units), mean over the windows
FEATURES = ("logit", "spread", "box_size", "mouth_drop", "log_contrast")
# The shipped model's score may only rise with these (+1) and fall with these (-1).
MONOTONE = {"logit": 1, "spread": -1}
# The shipped model: boosted trees on FEATURES (scripts/fit_face_presence.py writes it).
MODEL_FILE = "face-presence.safetensors"
# The model before the trees: the windows' mean logit less 15 x the landmark spread.
LINEAR_MODEL: dict[str, float] = {"bias": 0.0, "logit": 1.0, "spread": -15.0}


def grid_windows(
    sides: Sequence[float], shifts: Sequence[float]
) -> tuple[tuple[float, float, float], ...]:
    """Every (side, dx, dy) for the given sides and a square grid of shifts (fractions of the
    short side)."""
    return tuple((float(s), float(dx), float(dy)) for s in sides for dy in shifts
                 for dx in shifts)


# Side 0.45 (where a centred LFW face sits), at the centre and shifted by 0.08 of the short
# side in x, y or both: 9 windows, all inside the fallback's 80% square.
DEFAULT_WINDOWS = grid_windows((0.45,), (-0.08, 0.0, 0.08))
DEFAULT_CUTOFF = 0.323  # out of fold: scripts/fit_face_presence.py (module docstring)


_SHIPPED: list[TreeEnsemble] = []


def shipped_model() -> TreeEnsemble:
    """The boosted trees that ship in ``siamface/assets`` (read once)."""
    if not _SHIPPED:
        from importlib import resources

        path = resources.files("siamface") / "assets" / MODEL_FILE
        trees = TreeEnsemble.load(str(path))
        if trees.features != FEATURES:
            raise ValueError(f"{path} reads features {trees.features}, not {FEATURES}")
        _SHIPPED.append(trees)
    return _SHIPPED[0]


def _check_image(image: object, index: int) -> np.ndarray:
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
            or image.dtype != np.uint8 or min(image.shape[:2]) < 1):
        got = (f"shape {image.shape} dtype {image.dtype}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise ValueError(f"image {index}: expected an (H, W, 3) uint8 RGB array, got {got}")
    return image


def _chunked(logits: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """A torch network's logits on float32 crops, O-Net's batch at a time, numpy outputs."""
    from siamface.detect.mtcnn import numpy_logits

    return in_chunks(numpy_logits(logits), x, CROPS_PER_CALL[1])


def _raise_contrast(x: np.ndarray) -> np.ndarray:
    """Normalised crops (N, 3, S, S) minus their mean (over all channels), times
    clamp(CONTRAST_TARGET / std, 1, CONTRAST_GAIN), clipped to O-Net's input range."""
    flat = x.reshape(x.shape[0], -1)
    mean, std = flat.mean(1), flat.std(1, ddof=1)
    gain = np.clip(np.float32(CONTRAST_TARGET) / np.maximum(std, np.float32(_EPS)),
                   1.0, CONTRAST_GAIN).astype(np.float32)
    out = (x - mean[:, None, None, None]) * gain[:, None, None, None]
    return np.clip(out, -1.0, 1.0)


def _logit(z: np.ndarray) -> np.ndarray:
    """A network's face logit through its probability clamped to [_EPS, 1 - _EPS] (so one
    window's extreme logit cannot dominate the mean)."""
    p = np.clip(sigmoid(z), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


class FacePresence:
    """Face probability of the region a centre-crop fallback uses (see the module docstring).

    ``onet`` (``rnet``, ``pnet``) default to the shared MTCNN networks, loaded on first use.
    ``windows`` are (side, dx, dy) fractions of the short side; ``contrast`` raises each
    crop's contrast first; ``aggregate`` combines the windows' logits (``mean``) or takes the
    best window (``max``); ``use_rnet`` and ``use_pnet`` average R-Net's logit on 24x24 crops
    and P-Net's on 12x12 crops of the same windows with O-Net's, window by window;
    ``model`` turns :data:`FEATURES` into the score's logit: ``None`` for the shipped trees
    (:func:`shipped_model`), a :class:`~siamface.detect.trees.TreeEnsemble`, or a mapping of
    ``"bias"`` and feature names to weights (a linear score; :data:`LINEAR_MODEL` is the one
    before the trees). The defaults are the calibrated method;
    ``cutoff`` is what :meth:`is_face` compares with.
    """

    def __init__(
        self,
        onet: ONet | None = None,
        *,
        windows: Sequence[tuple[float, float, float]] = DEFAULT_WINDOWS,
        contrast: bool = True,
        aggregate: str = "mean",
        use_rnet: bool = True,
        rnet: RNet | None = None,
        use_pnet: bool = True,
        pnet: PNet | None = None,
        model: TreeEnsemble | Mapping[str, float] | None = None,
        cutoff: float = DEFAULT_CUTOFF,
    ) -> None:
        wins = np.asarray(windows, dtype=np.float64).reshape(-1, 3)
        if len(wins) == 0 or not (wins[:, 0] > 0).all() or not np.isfinite(wins).all():
            raise ValueError(f"windows must be one or more (side > 0, dx, dy), got {windows!r}")
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if isinstance(model, Mapping):
            unknown = set(model) - {"bias", *FEATURES}
            if unknown or not all(isinstance(v, int | float) and math.isfinite(v)
                                  for v in model.values()):
                raise ValueError(f"model must map 'bias' and features from {FEATURES} to "
                                 f"finite weights, got {dict(model)!r}")
        elif model is not None and not isinstance(model, TreeEnsemble):
            raise ValueError(f"model must be None (the shipped trees), a TreeEnsemble or a "
                             f"mapping of weights, got {type(model).__name__}")
        if isinstance(model, TreeEnsemble) and model.features != FEATURES:
            raise ValueError(f"the trees read features {model.features}, not {FEATURES}")
        if not 0 <= cutoff <= 1:
            raise ValueError(f"cutoff must be in [0, 1], got {cutoff!r}")
        self._onet = onet
        self._rnet = rnet
        self._pnet = pnet
        self.windows = wins
        self.contrast = bool(contrast)
        self.aggregate = aggregate
        self.use_rnet = bool(use_rnet)
        self.use_pnet = bool(use_pnet)
        self._model = ({k: float(v) for k, v in model.items()} if isinstance(model, Mapping)
                       else model)
        self.cutoff = float(cutoff)

    def __repr__(self) -> str:
        return (f"FacePresence(windows={len(self.windows)}, contrast={self.contrast}, "
                f"aggregate={self.aggregate!r}, use_rnet={self.use_rnet}, "
                f"use_pnet={self.use_pnet}, model={self._model_text()}, "
                f"cutoff={self.cutoff:g})")

    def describe(self) -> dict[str, Any]:
        """What decides the scores, JSON-serialisable (part of the face pipeline's cache key)."""
        nets = ["onet", *(["rnet"] * self.use_rnet), *(["pnet"] * self.use_pnet)]
        return {"windows": self.windows.round(6).tolist(), "contrast": self.contrast,
                "aggregate": self.aggregate, "networks": nets,
                "model": self._model_text()}

    def _model_text(self) -> str:
        model = self.model
        if isinstance(model, TreeEnsemble):
            return f"trees:{model.digest()}"
        return "linear:" + ",".join(f"{k}={v:g}" for k, v in sorted(model.items()))

    @property
    def model(self) -> TreeEnsemble | dict[str, float]:
        """The trees (the shipped ones unless given) or the linear weights."""
        if self._model is None:
            self._model = shipped_model()
        return self._model

    def decision(self, features: np.ndarray) -> np.ndarray:
        """(N,) float64 logit of the face probability of (N, len(FEATURES)) features."""
        model = self.model
        if isinstance(model, TreeEnsemble):
            return model.decision(features)
        weights = np.array([model.get(f, 0.0) for f in FEATURES])
        return model.get("bias", 0.0) + np.asarray(features, np.float64) @ weights

    @property
    def onet(self) -> ONet:
        if self._onet is None:
            from siamface.detect.nets import load_networks

            self._onet = load_networks()[2]
        return self._onet

    @property
    def rnet(self) -> RNet:
        if self._rnet is None:
            from siamface.detect.nets import load_networks

            self._rnet = load_networks()[1]
        return self._rnet

    @property
    def pnet(self) -> PNet:
        if self._pnet is None:
            from siamface.detect.nets import load_networks

            self._pnet = load_networks()[0]
        return self._pnet

    def run_onet(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net's box regression (N, 4: offsets of x0, y0, x1, y1, fractions of the crop
        side), landmarks (N, 10: five x then five y, fractions of the crop) and face logit
        (N,) of float32 48x48 crops (N, 3, 48, 48)."""
        return _chunked(self.onet.logits, x)

    def run_rnet(self, x: np.ndarray) -> np.ndarray:
        """R-Net's face logit (N,) of float32 24x24 crops (N, 3, 24, 24)."""
        return _chunked(self.rnet.logits, x)[1]

    def run_pnet(self, x: np.ndarray) -> np.ndarray:
        """P-Net's face logit (N,) of float32 12x12 crops (N, 3, 12, 12) (one output cell)."""
        return _chunked(self.pnet.logits, x)[1].reshape(-1)

    def window_boxes(self, height: int, width: int) -> np.ndarray:
        """The windows of an image of that size: (K, 4) int64 x0, y0, x1, y1, half-open, in
        its pixels (they may reach past the border; that part counts as black)."""
        short = min(height, width)
        side = np.maximum(1.0, np.round(self.windows[:, 0] * short))
        x0 = np.round(width / 2 + self.windows[:, 1] * short - side / 2)
        y0 = np.round(height / 2 + self.windows[:, 2] * short - side / 2)
        return np.stack([x0, y0, x0 + side, y0 + side], axis=1).astype(np.int64)

    def _region(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The part of ``image`` the windows cover (shrunk when long) as an (h, w, 3) uint8
        array, and the windows in its pixels."""
        h, w = image.shape[:2]
        boxes = self.window_boxes(h, w)
        left, top = int(np.clip(boxes[:, 0].min(), 0, w - 1)), int(np.clip(boxes[:, 1].min(),
                                                                            0, h - 1))
        right = int(np.clip(boxes[:, 2].max(), left + 1, w))
        bottom = int(np.clip(boxes[:, 3].max(), top + 1, h))
        region = image[top:bottom, left:right]
        boxes = boxes - np.array([left, top, left, top])
        if max(region.shape[:2]) > _MAX_REGION:
            f = _MAX_REGION / max(region.shape[:2])
            size = (max(1, round(region.shape[1] * f)), max(1, round(region.shape[0] * f)))
            fx, fy = size[0] / region.shape[1], size[1] / region.shape[0]
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
            boxes = np.round(boxes * np.array([fx, fy, fx, fy])).astype(np.int64)
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        return region, boxes

    def _crop_source(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
        """What every crop size is resampled from: the integral images of the covered
        regions and the windows in them (built once per chunk, shared by the three nets)."""
        regions = [self._region(_check_image(im, i)) for i, im in enumerate(images)]
        arrays = [r[0] for r in regions]
        table, meta = integral_images(arrays)
        sizes = np.array([a.shape[:2] for a in arrays], dtype=np.int64)
        boxes = np.concatenate([r[1] for r in regions])
        index = np.repeat(np.arange(len(regions)), len(self.windows))
        return table, meta, index, boxes, sizes

    @staticmethod
    def _resample(source: tuple[np.ndarray, ...], size: int, contrast: bool) -> np.ndarray:
        table, meta, index, boxes, sizes = source
        x = resample_crops(table, meta, index, boxes, size, sizes, MEAN, SCALE)
        return _raise_contrast(x) if contrast else x

    def crops(self, images: Sequence[np.ndarray], size: int = 48, *,
              contrast: bool | None = None) -> np.ndarray:
        """The network input: (N * K, 3, size, size) float32 crops of the K windows of every
        image, normalised as MTCNN does (and contrast-raised when ``contrast``, which
        defaults to the instance's)."""
        if not len(images):
            return np.zeros((0, 3, size, size), np.float32)
        contrast = self.contrast if contrast is None else contrast
        return self._resample(self._crop_source(images), size, contrast)

    def landmark_spread(self, images: Sequence[np.ndarray], marks: np.ndarray) -> np.ndarray:
        """(N,) float64: how far O-Net's landmarks (``marks``, (N * K, 10) over the K windows
        of each image) move across the windows, in image points: per landmark the root of
        the x and y variances over the windows, averaged over the five, over the mean
        window side."""
        k = len(self.windows)
        out = np.zeros(len(images))
        for i, image in enumerate(images):
            boxes = self.window_boxes(*image.shape[:2]).astype(np.float64)
            side = boxes[:, 2] - boxes[:, 0]
            m = marks[i * k:(i + 1) * k].astype(np.float64).reshape(k, 2, 5)
            xs = boxes[:, :1] + m[:, 0] * side[:, None]
            ys = boxes[:, 1:2] + m[:, 1] * side[:, None]
            out[i] = np.hypot(xs.std(0), ys.std(0)).mean() / side.mean()
        return out

    def window_votes(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(N, K) float64 face logit of each window of each image and (N, len(FEATURES))
        float64 features (:data:`FEATURES`; ``logit`` is the windows' logits aggregated)."""
        images = list(images)
        k = len(self.windows)
        per_step = max(1, _CROPS_PER_RESAMPLE // k)
        logits, features = [np.zeros((0, k))], [np.zeros((0, len(FEATURES)))]
        for start in range(0, len(images), per_step):
            chunk = images[start:start + per_step]
            source = self._crop_source(chunk)
            raw = self._resample(source, 48, contrast=False)
            contrast = raw.reshape(len(chunk), k, -1).std(axis=2, ddof=1).mean(axis=1)
            reg, marks, onet = self.run_onet(_raise_contrast(raw) if self.contrast else raw)
            votes = [_logit(onet)]
            if self.use_rnet:
                votes.append(_logit(self.run_rnet(self._resample(source, 24, self.contrast))))
            if self.use_pnet:
                votes.append(_logit(self.run_pnet(self._resample(source, 12, self.contrast))))
            z = np.mean(votes, axis=0).reshape(len(chunk), k)
            logits.append(z)
            reg = reg.astype(np.float64).reshape(len(chunk), k, 4)
            box_size = np.maximum(1 + reg[..., 2] - reg[..., 0], 1 + reg[..., 3] - reg[..., 1])
            m = marks.astype(np.float64).reshape(len(chunk), k, 10)
            mouth_drop = (m[..., 8] + m[..., 9] - m[..., 5] - m[..., 6]) / 2
            agg = z.mean(axis=1) if self.aggregate == "mean" else z.max(axis=1)
            features.append(np.stack([agg, self.landmark_spread(chunk, marks),
                                      box_size.mean(axis=1), mouth_drop.mean(axis=1),
                                      np.log(0.001 + contrast.astype(np.float64))], axis=1))
        return np.concatenate(logits), np.concatenate(features)

    def features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, len(FEATURES)) float64: what the score of each image is made of."""
        return self.window_votes(images)[1]

    def score_many(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Face probability (N,) float64 in [0, 1] of each image's fallback region."""
        z = self.decision(self.features(images))
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, image: np.ndarray) -> float:
        """Face probability in [0, 1] of the region a centre-crop fallback uses in ``image``
        (an (H, W, 3) uint8 RGB array of any size)."""
        return float(self.score_many([image])[0])

    def is_face(self, image: np.ndarray) -> bool:
        """``score(image) >= cutoff``."""
        return self.score(image) >= self.cutoff
