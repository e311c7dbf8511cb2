"""Seconds, FLOPs, memory and model-FLOP utilisation of one training step; GPU hours of a sweep.

Usage: python benchmarks/train_step.py [--sizes 64 128] [--threads 2] [--steps 3]
       [--ngf 64 --n-blocks 9 --ndf 64 --batch 1]   (defaults: the paper-scale networks)
       [--n-downsampling 2 --upsampling transpose --amp none|bf16|auto --channels-last]
       [--models cyclegan_gc reference_supervised] [--device auto|cpu|cuda]
       [--synthesis-size 256 --synthesis-slices 64 | --synthesis-slices 0]
       [--sweep configs/paper.yaml --gpu-peak-tflops 312 --gpu-mfu 0.1 0.2 0.4]

Prints one JSON line per model and image size: {"model", "size", "seconds_per_step",
"flops_per_step", "mfu", "peak_memory_mb", ...}. FLOPs are counted by
torch.utils.flop_counter for the work the step really does (CycleGAN: four generator
passes, discriminator passes, backward; supervised: one generator pass and backward); MFU
is the achieved FLOP rate divided by the device's peak in the precision the step runs in
(``mfu``: fp32, or bf16 when the step runs in bf16 autocast), measured in the same process
as the better of a 2048² matmul and the same GEMM as a 1x1 convolution; both peaks are printed.
Peak memory: on CUDA the peak of
allocated tensors during the timed steps; on CPU the process's peak resident set so far
(sizes run in increasing order, so each line's peak is that size's). A synthesis line
reports slices per second of batched MR→CT inference (``mr2ct.models.synthesis.predict_ct``, batch
16) at ``--synthesis-size``.

``--sweep CONFIG`` (overlays on config.yaml, as ``mr2ct validate`` stacks them) counts the
training runs of that design (sizes × models × folds × replicates) and their steps, and
turns the FLOPs per step measured here at the config's ``preprocess.image_size`` into GPU
hours at ``--gpu-peak-tflops`` (default 312: an A100's dense bf16 tensor-core peak) and
each assumed model-FLOP utilisation of ``--gpu-mfu``. The FLOP count does not depend on
the device; the utilisation a GPU reaches at batch 1 is the assumption.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from mr2ct.models.devices import training_device
from mr2ct.models.training import TrainSettings, new_run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_seconds(device: torch.device, work, repeats: int) -> float:
    for _ in range(3):
        work()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        work()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 10) -> float:
    """Peak FLOP rate of ``device`` in ``dtype``: the better of a square matmul (BLAS) and the same
    GEMM as a 1x1 convolution (the convolution library the networks use; on some CPUs only one of
    the two has native kernels for a precision, so a single probe can understate the peak)."""
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    matmul = 2 * n**3 / _best_seconds(device, lambda: a @ b, repeats)
    side = int(n**0.5)
    x = torch.rand(1, n, side, side, device=device, dtype=dtype)
    w = torch.rand(n, n, 1, 1, device=device, dtype=dtype)
    with torch.no_grad():
        conv = 2 * n * n * side * side / _best_seconds(device, lambda: torch.nn.functional.conv2d(x, w), repeats)
    return max(matmul, conv)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sweep_design(overlays: list[str]) -> dict:
    """config.yaml with ``overlays`` merged on top, validated (run from the repository root)."""
    from mr2ct.config import merge_files, validate_config

    return validate_config(merge_files(["config.yaml", *overlays]))


def sweep_estimate(config: dict, flops: dict[str, float], peak_tflops: float, mfus: list[float]) -> dict:
    """Training runs, steps and FLOPs of a design; GPU hours at each utilisation."""
    sp, train = config["splits"], config["train"]
    runs, total = {}, 0.0
    for model in config["models"]:
        supervised = model == "reference_supervised"  # the reference trains once (no seeds)
        steps = train["supervised_steps"] if supervised else train["steps"]
        step_flops = flops["reference_supervised" if supervised else "cyclegan_gc"]
        runs[model] = {"runs": len(sp["sizes"]) * sp["folds"] * (1 if supervised else sp["replicates"]), "steps": steps}
        total += runs[model]["runs"] * steps * step_flops
    return {
        "image_size": config["preprocess"]["image_size"],
        "runs": runs,
        "training_pflop": round(total / 1e15, 1),
        "gpu_peak_tflops": peak_tflops,
        "gpu_hours": {str(m): round(total / (peak_tflops * 1e12 * m) / 3600, 1) for m in mfus},
    }


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
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--models", nargs="+", default=["cyclegan_gc"], choices=["cyclegan_gc", "reference_supervised"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--synthesis-size", type=int, default=256)
    parser.add_argument("--synthesis-slices", type=int, default=64)
    parser.add_argument("--sweep", nargs="+", metavar="CONFIG", help="config overlays of the sweep to estimate")
    parser.add_argument("--gpu-peak-tflops", type=float, default=312.0)
    parser.add_argument("--gpu-mfu", type=float, nargs="+", default=[0.1, 0.2, 0.4])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = training_device(args.device)
    if args.sweep:
        design = sweep_design(args.sweep)
        args.sizes = [design["preprocess"]["image_size"]]
        args.models = ["cyclegan_gc", "reference_supervised"]
    from torch.utils.flop_counter import FlopCounterMode

    peaks: dict[str, float] = {}
    flops_by_model: dict[str, float] = {}
    for size in sorted(args.sizes):
        for model in args.models:
            settings = TrainSettings(
                model=model,
                gc_weight=5.0 if model == "cyclegan_gc" else 0.0,
                batch_size=args.batch,
                ngf=args.ngf,
                n_blocks=args.n_blocks,
                ndf=args.ndf,
                n_layers=args.n_layers,
                pool_size=50,
                n_downsampling=args.n_downsampling,
                upsampling=args.upsampling,
                amp=args.amp,
                channels_last=args.channels_last,
                device=device.type,
            )
            run = new_run(settings, device)
            if not peaks:  # the peak of each precision, so that MFU divides by the step's own
                peaks = {"fp32": matmul_peak(device, torch.float32), "bf16": matmul_peak(device, torch.bfloat16)}
            layout = torch.channels_last if args.channels_last else torch.contiguous_format
            mr = (torch.rand(args.batch, 1, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
            ct = (torch.rand(args.batch, 1, size, size, device=device) * 2 - 1).contiguous(memory_format=layout)
            run.train_step(mr, ct)  # warm-up
            with FlopCounterMode(display=False) as counter:
                run.train_step(mr, ct)
            flops = counter.get_total_flops()
            flops_by_model[model] = flops
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                run.train_step(mr, ct)
            _sync(device)
            seconds = (time.perf_counter() - start) / args.steps
            record = {
                "model": model,
                "size": size,
                "seconds_per_step": round(seconds, 4),
                "flops_per_step": flops,
                "mfu": round(flops / seconds / peaks[run.precision], 3),
                "peak_tflops": round(peaks[run.precision] / 1e12, 3),
                "peak_tflops_fp32": round(peaks["fp32"] / 1e12, 3),
                "peak_tflops_bf16": round(peaks["bf16"] / 1e12, 3),
                "peak_memory_mb": round(peak_memory_mb(device), 1),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "threads": args.threads,
                "ngf": args.ngf,
                "n_blocks": args.n_blocks,
                "ndf": args.ndf,
                "n_layers": args.n_layers,
                "batch": args.batch,
                "n_downsampling": args.n_downsampling,
                "upsampling": args.upsampling,
                "precision": run.precision,
                "channels_last": args.channels_last,
            }
            print(json.dumps(record), flush=True)
            del run
    if args.sweep:
        estimate = sweep_estimate(design, flops_by_model, args.gpu_peak_tflops, args.gpu_mfu)
        print(json.dumps({"sweep": args.sweep, **estimate}), flush=True)
    if args.synthesis_slices <= 0:
        return

    from mr2ct.models.networks import ResnetGenerator
    from mr2ct.models.synthesis import predict_ct

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
