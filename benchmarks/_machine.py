"""How fast this machine is right now, printed beside timed figures: shared 2-core machines
change speed by 30% or more within an hour, so a figure means little without it."""

from __future__ import annotations

import os
import time

import numpy as np


def matmul_gflops(seconds: float = 1.0, n: int = 512) -> float:
    """float32 matrix-multiply rate (GFLOP/s) over about ``seconds``, every core."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, n, n), dtype=np.float32)
    a @ b
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e9


def describe() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"machine now: {os.cpu_count()} CPU(s), numpy float32 matmul "
            f"{matmul_gflops():.0f} GFLOP/s, load average {load}")
