"""``siamface bench DIR``: images per second and latency of each stage (decode, detect +
align, embed + gender, end to end) on a folder of real images, the machine's matrix-multiply
rate and the backbone's share of it, and the wall time of a new ``verify`` process."""

from __future__ import annotations

import argparse

from siamface.cli._common import (
    EXIT_OK,
    add_model_arguments,
    load_service,
    positive_int,
    print_json,
)

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed of each stage of the face pipeline on a folder",
                       description=__doc__)
    p.add_argument("folder", metavar="DIR", help="a folder of face photos (e.g. LFW's images)")
    p.add_argument("--images", type=positive_int, default=64, metavar="N",
                   help="images measured (default: 64, the first in path order)")
    p.add_argument("--batch", type=positive_int, default=32, metavar="N",
                   help="images (detection) and faces (embedding) per batch (default: 32)")
    p.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="torch threads (torch runtime; default: torch's own)")
    p.add_argument("--no-cold-start", dest="cold_start", action="store_false",
                   help="skip timing a new `siamface verify` process")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_model_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from siamface.bench import run_bench

    if args.threads is not None and args.runtime == "torch":
        import torch

        torch.set_num_threads(args.threads)
    service = load_service(args, batch_size=args.batch)
    figures = run_bench(service, args.folder, images=args.images, batch=args.batch,
                        verify_options=_verify_options(args) if args.cold_start else None)
    if args.json:
        print_json(figures)
        return EXIT_OK
    print(f"{figures['model']} [{figures['runtime']} runtime, {figures['threads'] or 'default'} thread(s), "
          f"{figures['cpus']} CPU(s), batch {figures['batch']}]")
    for stage in figures["stages"]:
        rate = stage["per_second"]
        line = (f"  {stage['stage']:<15} {stage['ms_per_item']:7.2f} ms per {stage['unit']}"
                f"  ({rate:6.1f}/s; batches p50 {stage['p50_ms']:.2f}, p95 "
                f"{stage['p95_ms']:.2f} ms per {stage['unit']})")
        if "ms_per_pass" in stage:
            line += (f"; {stage['ms_per_pass']:.2f} ms per pass, "
                     f"{figures['passes_per_face']} pass(es) per face")
        print(line)
    print(f"  numpy float32 matmul: {figures['matmul_gflops']:.0f} GFLOP/s")
    if figures["backbone_gflops"] is not None:
        print(f"  backbone: {figures['backbone_gflop_per_pass']:.2f} GFLOP per pass, "
              f"{figures['backbone_gflops']:.0f} GFLOP/s achieved = "
              f"{100 * figures['backbone_share_of_matmul']:.0f}% of the matmul rate")
    else:
        print("  backbone share of the matmul rate: not measured (FLOPs are counted with torch)")
    if figures["cold_verify_s"] is not None:
        print(f"  new `siamface verify` process: {figures['cold_verify_s']:.2f} s wall")
    elif args.cold_start:
        print("  new `siamface verify` process: failed (run it by hand to see why)")
    return EXIT_OK


def _verify_options(args: argparse.Namespace) -> list[str]:
    """The flags that make a new ``siamface verify`` load the model this bench measured."""
    options = ["--runtime", args.runtime]
    for flag, value in (("--model", args.model), ("--onnx-dir", args.onnx_dir),
                        ("--backbone", args.backbone), ("--crop", args.crop)):
        if value is not None:
            options += [flag, str(value)]
    if args.flip is not None:
        options.append("--flip" if args.flip else "--no-flip")
    return options
