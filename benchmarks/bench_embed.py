"""Embedding throughput of a backbone on the CPU: ms per face, median over several runs.

    PYTHONPATH=src python benchmarks/bench_embed.py --backbone dlib-resnet --batch 32 --threads 2

Variants: eager fp32 (NCHW), channels_last, under ``torch.no_grad`` or ``torch.inference_mode``,
and ``torch.compile`` with frozen weights. The dlib ResNet always runs with its affine layers
folded into the convolutions. ``embed()`` is the library path (eager, channels_last input);
"shipped model" rows are the service's path with the default model (heads and fine-tuned top
groups), plain and flip-averaged (each face and its mirror image: the default).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np
import torch

from siamface.backbones import create_backbone, get_pretrained_config, list_backbones


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _time(fn, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each run."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = _cpu_seconds(), time.perf_counter()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(_cpu_seconds() - c0)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="dlib-resnet", choices=list_backbones())
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="also time torch.compile (inductor, weights frozen); needs a C++ "
                        "compiler and takes about a minute")
    p.add_argument("--pretrained", action=argparse.BooleanOptionalAction, default=None,
                   help="load published weights (default: only for dlib-resnet)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = get_pretrained_config(args.backbone)
    pretrained = args.pretrained if args.pretrained is not None else cfg.package is not None
    model = create_backbone(args.backbone, pretrained=pretrained).eval()
    rng = np.random.default_rng(0)
    s = cfg.input_size
    chips = rng.integers(0, 256, (args.batch, s, s, 3), dtype=np.uint8)
    x = model.preprocess(chips)

    rows = []

    def add_row(label: str, wall: list[float], cpu: list[float]) -> None:
        med = statistics.median(wall)
        per = 1000 / args.batch
        rows.append((label, per * med, per * min(wall),
                     per * statistics.median(cpu) / args.threads, args.batch / med))

    def run(label: str, net: torch.nn.Module, inp: torch.Tensor, ctx) -> torch.Tensor:
        def step() -> torch.Tensor:
            with ctx():
                return net(inp)

        add_row(label, *_time(step, args.runs, args.warmup))
        return step()

    ref = run("NCHW, no_grad", model, x, torch.no_grad)
    run("NCHW, inference_mode", model, x, torch.inference_mode)
    cl_model = create_backbone(args.backbone, pretrained=pretrained).eval()
    cl_model = cl_model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = run("channels_last, inference_mode", cl_model, x_cl, torch.inference_mode)
    diff = (out - ref).abs().max().item()
    if args.compile:
        t0 = time.perf_counter()
        compiled = torch.compile(cl_model, options={"freezing": True})
        with torch.inference_mode():
            compiled(x_cl)
        compile_s = time.perf_counter() - t0
        out_c = run(f"torch.compile+freezing ({compile_s:.0f} s)", compiled, x_cl,
                    torch.inference_mode)
        diff = max(diff, (out_c - ref).abs().max().item())
    add_row("embed() incl. preprocess",
            *_time(lambda: model.embed(chips, batch_size=args.batch), args.runs, args.warmup))
    if args.backbone == "dlib-resnet":  # the service path of the shipped default model
        from siamface.service import load

        for flip in (False, True):
            service = load(flip=flip, batch_size=args.batch)
            add_row(f"shipped model, flip={flip}",
                    *_time(lambda s=service: s._run_chips(chips), args.runs, args.warmup))

    print(f"{args.backbone}: batch {args.batch}, {args.threads} threads, torch "
          f"{torch.__version__}, median of {args.runs} runs "
          f"(max abs diff of variants vs NCHW {diff:.1e}); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("cpu ms/face = process CPU time / threads (less sensitive to other processes)")
    print(f"{'variant':<32}{'ms/face median':>15}{'ms/face min':>13}{'cpu ms/face':>13}"
          f"{'faces/s':>9}")
    for label, ms, ms_min, cpu_ms, fps in rows:
        print(f"{label:<32}{ms:>15.2f}{ms_min:>13.2f}{cpu_ms:>13.2f}{fps:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
