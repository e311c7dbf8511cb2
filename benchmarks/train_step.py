"""Seconds, FLOPs and model-FLOP utilisation of one CycleGAN + GC training step.

Usage: python benchmarks/train_step.py [--sizes 64 128] [--threads 2] [--steps 3]
       [--ngf 64 --n-blocks 9 --ndf 64 --batch 1]   (defaults: the paper-scale networks)
       [--n-downsampling 2 --upsampling transpose --amp none|bf16|auto]
       [--synthesis-size 256 --synthesis-slices 64 | --synthesis-slices 0]

Prints one JSON line per image size: {"size", "seconds_per_step", "flops_per_step",
"mfu", ...}. FLOPs are counted by torch.utils.flop_counter for the work the step really
does (four generator passes, discriminator passes, backward); MFU is the achieved FLOP
rate divided by this CPU's fp32 matmul peak, measured in the same process with the same
thread count. A last line reports synthesis throughput: slices per second of batched
MR→CT inference (``mr2ct.training.predict_ct``, batch 16) at ``--synthesis-size``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from mr2ct.training import TrainSettings, new_run


def matmul_peak(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """Best fp32 matmul rate (FLOP/s) with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--n-layers", type=int, default=3)
    parser.add_argument("--n-downsampling", type=int, default=2)
    parser.add_argument("--upsampling", choices=["transpose", "resize"], default="transpose")
    parser.add_argument("--amp", choices=["none", "bf16", "auto"], default="none")
    parser.add_argument("--synthesis-size", type=int, default=256)
    parser.add_argument("--synthesis-slices", type=int, default=64)
    args = parser.parse_args()
    peak = matmul_peak(args.threads)
    from torch.utils.flop_counter import FlopCounterMode

    for size in args.sizes:
        settings = TrainSettings(
            model="cyclegan_gc",
            gc_weight=5.0,
            batch_size=args.batch,
            ngf=args.ngf,
            n_blocks=args.n_blocks,
            ndf=args.ndf,
            n_layers=args.n_layers,
            pool_size=50,
            n_downsampling=args.n_downsampling,
            upsampling=args.upsampling,
            amp=args.amp,
        )
        run = new_run(settings, torch.device("cpu"))
        mr = torch.rand(args.batch, 1, size, size) * 2 - 1
        ct = torch.rand(args.batch, 1, size, size) * 2 - 1
        run.train_step(mr, ct)  # warm-up
        with FlopCounterMode(display=False) as counter:
            run.train_step(mr, ct)
        flops = counter.get_total_flops()
        start = time.perf_counter()
        for _ in range(args.steps):
            run.train_step(mr, ct)
        seconds = (time.perf_counter() - start) / args.steps
        print(
            json.dumps(
                {
                    "size": size,
                    "seconds_per_step": round(seconds, 4),
                    "flops_per_step": flops,
                    "mfu": round(flops / seconds / peak, 3),
                    "peak_gflops": round(peak / 1e9, 1),
                    "threads": args.threads,
                    "ngf": args.ngf,
                    "n_blocks": args.n_blocks,
                    "ndf": args.ndf,
                    "n_layers": args.n_layers,
                    "batch": args.batch,
                    "n_downsampling": args.n_downsampling,
                    "upsampling": args.upsampling,
                    "precision": run.precision,
                }
            ),
            flush=True,
        )
    if args.synthesis_slices <= 0:
        return

    from mr2ct.networks import ResnetGenerator
    from mr2ct.training import predict_ct

    generator = ResnetGenerator(
        1, 1, ngf=args.ngf, n_blocks=args.n_blocks, n_downsampling=args.n_downsampling, upsampling=args.upsampling
    ).eval()
    slices = (torch.rand(args.synthesis_slices, args.synthesis_size, args.synthesis_size) * 2 - 1).numpy()
    predict_ct(generator, slices[:16])  # warm-up
    start = time.perf_counter()
    predict_ct(generator, slices, batch_size=16)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "synthesis_size": args.synthesis_size,
                "slices": args.synthesis_slices,
                "batch": 16,
                "slices_per_second": round(args.synthesis_slices / seconds, 2),
                "threads": args.threads,
                "ngf": args.ngf,
                "n_blocks": args.n_blocks,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
