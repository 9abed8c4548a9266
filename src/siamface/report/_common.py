"""Small helpers the report writers share: reading numbers out of ``metrics`` (where any
figure may be missing, None, NaN or a numpy scalar) and making ``metrics`` JSON-safe."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["get", "jsonable", "num"]


def num(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, None, NaN, inf, not a number)."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def get(mapping: Any, *keys: Any, default: Any = None) -> Any:
    """``mapping[k1][k2]...`` or ``default`` when any level is missing or not a mapping."""
    current = mapping
    for key in keys:
        if not isinstance(current, Mapping) or key not in current:
            return default
        current = current[key]
    return default if current is None else current


def jsonable(value: Any, *, _path: str = "metrics", replaced: list[str] | None = None) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts: numpy scalars and
    arrays become Python numbers and lists, tuples become lists, mapping keys strings, and
    every NaN / inf becomes None (its dotted path is appended to ``replaced`` when given)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, _path=f"{_path}.{k}", replaced=replaced)
                for k, v in value.items()}
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [jsonable(v, _path=f"{_path}[{i}]", replaced=replaced)
                for i, v in enumerate(value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        out = float(value)
        if not math.isfinite(out):
            if replaced is not None:
                replaced.append(_path)
            return None
        return out
    if value is None or isinstance(value, str):
        return value
    return str(value)
