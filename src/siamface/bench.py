"""Speed of every stage of the face pipeline on a folder of real images, measured in this
process: what ``siamface bench`` prints.

Stages: decoding, detection and alignment (batches of same-size images), embedding + gender
(batches of chips; a flip-averaged face costs two passes of the network), and end to end
(files to embeddings). Beside them: this machine's float32 matrix-multiply rate, the
backbone's achieved share of it (torch runtime only: its FLOPs are counted with torch), and
the wall time of a new ``siamface verify`` process.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from siamface.io import find_images, load_image

__all__ = ["matmul_gflops", "run_bench"]


def matmul_gflops(seconds: float = 1.0, n: int = 512) -> float:
    """float32 matrix-multiply rate (GFLOP/s) with numpy over about ``seconds``."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    a @ b
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


def _percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {"p50_ms": statistics.median(ordered),
            "p95_ms": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def _timed_batches(items: Sequence[Any], batch: int, fn: Callable[[list], Any]
                   ) -> tuple[float, list[float]]:
    """Total seconds of ``fn`` over ``items`` in batches, and ms per item of each batch."""
    per_item, total = [], 0.0
    for start in range(0, len(items), batch):
        chunk = list(items[start:start + batch])
        began = time.perf_counter()
        fn(chunk)
        took = time.perf_counter() - began
        total += took
        per_item.append(1000 * took / len(chunk))
    return total, per_item


def _stage(name: str, count: int, seconds: float, per_item_ms: list[float], unit: str
           ) -> dict[str, Any]:
    return {"stage": name, "items": count, "unit": unit,
            "ms_per_item": 1000 * seconds / max(count, 1),
            "per_second": count / seconds if seconds > 0 else None,
            **_percentiles(per_item_ms)}


def _backbone_gflop(service) -> float | None:
    """GFLOP of one pass of the backbone on one chip (torch runtime only), else None."""
    if service.runtime != "torch":
        return None
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    size = service.model.backbone.config.input_size
    x = torch.zeros(1, 3, size, size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        service.model.backbone(x)
    return counter.get_total_flops() / 1e9


def _cold_verify(a: str, b: str, verify_options: Sequence[str]) -> float | None:
    """Wall seconds of ``siamface verify a b`` in a new process; None when it failed (exit
    code 2: bad input or a missing export), so a failure is never timed as a start-up."""
    command = [sys.executable, "-m", "siamface.cli.main", "verify", a, b, *verify_options]
    began = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          check=False)
    seconds = time.perf_counter() - began
    return None if done.returncode == 2 else seconds  # 0 match, 1 no match, 3 no face


def run_bench(service, folder: str | os.PathLike, *, images: int = 64, batch: int = 32,
              verify_options: Sequence[str] | None = None) -> dict[str, Any]:
    """Every figure of ``siamface bench`` for ``service`` on up to ``images`` files of
    ``folder`` (warm: detection and embedding run once on two images before the timing).
    ``verify_options``: the flags a new ``siamface verify`` process gets to load the same
    model (its wall time is measured); None: not measured."""
    from siamface.errors import DatasetError

    paths = [str(p) for p in find_images(folder)[:images]]
    if not paths:
        raise DatasetError(f"no images under {folder}")
    pipeline = service.pipeline
    warm = pipeline.crop_batch([load_image(p, max_pixels=service.max_pixels)
                                for p in paths[:2]])  # builds the detector
    service._run_chips(np.stack([c.chip for c in warm]))

    stages = []
    decoded: list[np.ndarray] = []
    seconds, per = _timed_batches(paths, 1, lambda chunk: decoded.append(
        load_image(chunk[0], max_pixels=service.max_pixels)))
    stages.append(_stage("decode", len(paths), seconds, per, "image"))
    crops: list[Any] = []
    seconds, per = _timed_batches(decoded, batch, lambda chunk: crops.extend(
        pipeline.crop_batch(chunk)))
    stages.append(_stage("detect + align", len(decoded), seconds, per, "image"))
    faces = [c.chip for c in crops if getattr(c, "no_face", None) is None]
    if not faces:
        raise DatasetError(f"no face found in the {len(paths)} images measured under {folder}")
    chips = np.stack(faces)
    seconds, per = _timed_batches(chips, batch, lambda chunk: service._run_chips(
        np.stack(chunk)))
    passes = 2 if service.flip else 1
    embed = _stage("embed + gender", len(chips), seconds, per, "face")
    embed["ms_per_pass"] = embed["ms_per_item"] / passes
    stages.append(embed)
    seconds, per = _timed_batches(paths, batch, lambda chunk: service.faces(chunk))
    stages.append(_stage("end to end", len(paths), seconds, per, "image"))

    peak = matmul_gflops()
    gflop = _backbone_gflop(service)
    achieved = (gflop * 1000 / embed["ms_per_pass"]) if gflop is not None else None
    out: dict[str, Any] = {
        "runtime": service.runtime, "model": service.describe(),
        "batch": batch, "flip": bool(service.flip), "passes_per_face": passes,
        "threads": _threads(service), "cpus": os.cpu_count(), "stages": stages,
        "matmul_gflops": peak, "backbone_gflop_per_pass": gflop,
        "backbone_gflops": achieved,
        "backbone_share_of_matmul": achieved / peak if achieved is not None else None,
        "cold_verify_s": (None if verify_options is None else
                          _cold_verify(paths[0], paths[min(1, len(paths) - 1)],
                                       verify_options)),
    }
    return out


def _threads(service) -> int | None:
    if service.runtime != "torch":
        return getattr(service, "threads", None)
    import torch

    return torch.get_num_threads()
