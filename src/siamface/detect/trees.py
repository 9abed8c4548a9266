"""Boosted regression trees evaluated in numpy: the face-presence check's model.

A :class:`TreeEnsemble` is what scripts/fit_face_presence.py writes (a scikit-learn
``HistGradientBoostingClassifier`` flattened to arrays) and
:class:`siamface.detect.presence.FacePresence` reads: ``decision(features)`` is the baseline
plus the value of the leaf each feature row reaches in every tree (a logit). Node ``j`` of
tree ``t`` sends a row left when ``row[feature[t, j]] <= threshold[t, j]``, else right; a
leaf keeps it. The file is safetensors (arrays and a JSON ``meta`` string), nothing
executable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

ARRAYS = ("feature", "threshold", "left", "right", "value", "is_leaf")


class TreeEnsemble:
    """``T`` trees of at most ``M`` nodes each, as (T, M) arrays (see the module docstring);
    ``features`` names the columns the trees read; ``meta`` is a JSON-serialisable record of
    how it was fitted."""

    def __init__(self, *, feature: np.ndarray, threshold: np.ndarray, left: np.ndarray,
                 right: np.ndarray, value: np.ndarray, is_leaf: np.ndarray, baseline: float,
                 features: tuple[str, ...], meta: dict[str, Any] | None = None) -> None:
        self.feature = np.asarray(feature, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.value = np.asarray(value, dtype=np.float64)
        self.is_leaf = np.asarray(is_leaf, dtype=bool)
        self.baseline = float(baseline)
        self.features = tuple(features)
        self.meta = dict(meta or {})
        self._check()

    def _check(self) -> None:
        shape = self.feature.shape
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"tree arrays must be (trees, nodes), got shape {shape}")
        for name in ARRAYS:
            if getattr(self, name).shape != shape:
                raise ValueError(f"tree array {name!r} has shape {getattr(self, name).shape}, "
                                 f"expected {shape}")
        inner = ~self.is_leaf
        nodes = shape[1]
        for name in ("left", "right"):
            child = getattr(self, name)[inner]
            if ((child < 0) | (child >= nodes)).any():
                raise ValueError(f"tree array {name!r} points outside the tree")
        if ((self.feature[inner] < 0) | (self.feature[inner] >= len(self.features))).any():
            raise ValueError(f"trees read a feature outside {self.features}")
        if not (np.isfinite(self.value).all() and np.isfinite(self.baseline)):
            raise ValueError("tree values must be finite")
        _ = self.depth  # refuses trees that loop

    @property
    def depth(self) -> int:
        """Steps from a root to the deepest node (bounds the loop in :meth:`decision`)."""
        if not hasattr(self, "_depth"):
            nodes = self.feature.shape[1]
            level = np.full(self.feature.shape, -1, np.int64)
            level[:, 0] = 0
            for _ in range(nodes):
                t, j = np.nonzero(~self.is_leaf & (level >= 0))
                before = level.copy()
                level[t, self.left[t, j]] = level[t, j] + 1
                level[t, self.right[t, j]] = level[t, j] + 1
                if (level == before).all():
                    break
                if level.max() >= nodes:
                    raise ValueError("the trees loop: a node is its own descendant")
            self._depth = int(level.max())
        return self._depth

    def decision(self, x: np.ndarray) -> np.ndarray:
        """(N,) float64 logit of each row of ``x`` ((N, len(features)))."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected (N, {len(self.features)}) features, got {x.shape}")
        trees = np.arange(self.feature.shape[0])[None, :]
        rows = np.arange(len(x))[:, None]
        node = np.zeros((len(x), self.feature.shape[0]), np.int64)
        for _ in range(self.depth):
            leaf = self.is_leaf[trees, node]
            goes_left = x[rows, self.feature[trees, node]] <= self.threshold[trees, node]
            child = np.where(goes_left, self.left[trees, node], self.right[trees, node])
            node = np.where(leaf, node, child)
        return self.baseline + self.value[trees, node].sum(axis=1)

    def digest(self) -> str:
        """sha256 (16 hex digits) of the arrays and the feature names: what decides scores
        (computed once; the arrays are not meant to change after construction)."""
        if not hasattr(self, "_digest"):
            h = hashlib.sha256(json.dumps([self.features, self.baseline]).encode())
            for name in ARRAYS:
                h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
            self._digest = h.hexdigest()[:16]
        return self._digest

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file (to a temporary name, then renamed)."""
        from safetensors.numpy import save_file

        path = Path(path)
        tensors = {name: np.ascontiguousarray(getattr(self, name)) for name in ARRAYS}
        tensors["is_leaf"] = tensors["is_leaf"].astype(np.uint8)
        tensors["baseline"] = np.array([self.baseline])
        meta = {"format": "siamface-trees/1", "features": json.dumps(self.features),
                "meta": json.dumps(self.meta)}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TreeEnsemble:
        """Read what :meth:`save` wrote; a file that is not one fails with a message saying
        why."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as fh:
                header = fh.metadata() or {}
                if header.get("format") != "siamface-trees/1":
                    raise ValueError(f"{path} is not a siamface tree model "
                                     f"(format {header.get('format')!r})")
                arrays = {name: fh.get_tensor(name) for name in (*ARRAYS, "baseline")}
            return cls(**{k: arrays[k] for k in ARRAYS}, baseline=float(arrays["baseline"][0]),
                       features=tuple(json.loads(header["features"])),
                       meta=json.loads(header.get("meta", "{}")))
        except ValueError:
            raise
        except Exception as exc:  # OSError, a missing key, safetensors' own header error
            raise ValueError(f"cannot read the tree model {path}: {exc}") from exc
