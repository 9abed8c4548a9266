"""How fast this machine is right now, printed beside timed figures: shared 2-core machines
change speed by 30% or more within an hour, so a figure means little without it."""

from __future__ import annotations

import os

from siamface.bench import matmul_gflops


def describe() -> str:
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"machine now: {os.cpu_count()} CPU(s), numpy float32 matmul "
            f"{matmul_gflops():.0f} GFLOP/s, load average {load}")
