"""Embedding throughput of a backbone on the CPU: ms per face, median over several runs.

    PYTHONPATH=src python benchmarks/bench_embed.py --backbone dlib-resnet --batch 32 --threads 2

Variants: eager fp32 (NCHW), channels_last, under ``torch.no_grad`` or ``torch.inference_mode``.
The dlib ResNet always runs with its affine layers folded into the convolutions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from siamface.backbones import create_backbone, get_pretrained_config, list_backbones


def _time(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="dlib-resnet", choices=list_backbones())
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
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

    def run(label: str, net: torch.nn.Module, inp: torch.Tensor, ctx) -> torch.Tensor:
        def step() -> torch.Tensor:
            with ctx():
                return net(inp)

        times = _time(step, args.runs, args.warmup)
        med = statistics.median(times)
        rows.append((label, 1000 * med / args.batch, 1000 * min(times) / args.batch,
                     args.batch / med))
        return step()

    ref = run("NCHW, no_grad", model, x, torch.no_grad)
    run("NCHW, inference_mode", model, x, torch.inference_mode)
    cl_model = create_backbone(args.backbone, pretrained=pretrained).eval()
    cl_model = cl_model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = run("channels_last, inference_mode", cl_model, x_cl, torch.inference_mode)
    diff = (out - ref).abs().max().item()
    embed_times = _time(lambda: model.embed(chips, batch_size=args.batch), args.runs,
                        args.warmup)
    med = statistics.median(embed_times)
    rows.append(("embed() incl. preprocess", 1000 * med / args.batch,
                 1000 * min(embed_times) / args.batch, args.batch / med))

    print(f"{args.backbone}: batch {args.batch}, {args.threads} threads, torch "
          f"{torch.__version__}, median of {args.runs} runs "
          f"(channels_last vs NCHW max abs diff {diff:.1e})")
    print(f"{'variant':<32}{'ms/face (median)':>18}{'ms/face (min)':>15}{'faces/s':>10}")
    for label, ms, ms_min, fps in rows:
        print(f"{label:<32}{ms:>18.2f}{ms_min:>15.2f}{fps:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
