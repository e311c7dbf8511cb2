"""The workflow's training loop against a minimal loop of the same step, side by side in one process.

Usage: python benchmarks/step_profile.py --workdir WORKDIR [--steps 600] [--rounds 2]
       [--model cyclegan_gc] [--fold 0] [--size 6] [--set key=value ...] [--markdown]

WORKDIR holds a preprocessed default run (``snakemake --until preprocess splits``). One thread,
as the workflow's training jobs. Alternates, ``--rounds`` times:

* **minimal**: the same networks, losses, optimiser and precision as the run (``new_run`` of
  the same settings), one fixed random batch, nothing else: generator forward and backward,
  GC, discriminator step; no sampling, augmentation, image pool, validation, logging or
  checkpoints;
* **workflow**: ``mr2ct.models.training.train_run`` on the fold's real training caches for
  ``--steps`` steps with the config's validation and checkpoint schedule (``eval_every``,
  ``checkpoint_every``), timed by part (batch drawing and augmentation, the optimisation step,
  validation with its montage, checkpoints, and the rest).

The FLOP rate of each is the FLOPs of one training step (``torch.utils.flop_counter``, the
same for both) times the steps, over the wall time; the ratio workflow / minimal is the share
of the training budget spent on learning. Prints one JSON line per loop and round, then a
summary line (and a Markdown table with ``--markdown``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

import mr2ct.models.devices
import mr2ct.models.resumable
import mr2ct.models.training
import mr2ct.report.plotting
from mr2ct.config import load_config
from mr2ct.data.phantom import subject_ids
from mr2ct.data.splits import splits_from_config
from mr2ct.models.devices import training_device
from mr2ct.models.training import new_run
from mr2ct.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


class PartTimer:
    """Wraps module attributes so that each call's wall time is added to a named part."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.patched: list[tuple[object, str, object]] = []

    def wrap(self, owner: object, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start

        self.patched.append((owner, name, original))
        setattr(owner, name, timed)

    def restore(self) -> None:
        for owner, name, original in reversed(self.patched):
            setattr(owner, name, original)
        self.patched.clear()


def step_flops(settings: TrainSettings, device: torch.device, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    run = new_run(settings, device)
    run.train_step(*batch)
    with FlopCounterMode(display=False) as counter:
        run.train_step(*batch)
    return int(counter.get_total_flops())


def random_batch(settings: TrainSettings, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    channels = 2 * settings.context_slices + 1
    mr = torch.rand(settings.batch_size, channels, size, size, generator=g) * 2 - 1
    ct = torch.rand(settings.batch_size, 1, size, size, generator=g) * 2 - 1
    return mr, ct


def minimal_loop(settings: TrainSettings, device: torch.device, batch, steps: int) -> float:
    """Seconds for ``steps`` optimisation steps of a fresh run on one fixed batch."""
    run = new_run(settings, device)
    run.train_step(*batch)  # warm-up (allocations, kernel selection)
    start = time.perf_counter()
    for _ in range(steps):
        run.train_step(*batch)
    return time.perf_counter() - start


def workflow_loop(settings: TrainSettings, caches: dict[str, list[Path]]) -> tuple[float, dict[str, float]]:
    """Seconds of ``train_run`` and their split by part."""
    timer = PartTimer()
    timer.wrap(mr2ct.models.training, "augment_geometry", "batch drawing and augmentation")
    timer.wrap(mr2ct.models.training, "evaluate", "validation (prediction, scores)")
    timer.wrap(mr2ct.report.plotting, "plot_montage", "validation montage")
    timer.wrap(mr2ct.report.plotting, "plot_losses", "loss curves")
    timer.wrap(mr2ct.models.resumable, "save_checkpoint", "checkpoints")
    timer.wrap(mr2ct.models.training, "save_checkpoint", "checkpoints")
    for cls in (mr2ct.models.training.CycleGANRun, mr2ct.models.training.SupervisedRun):
        timer.wrap(cls, "train_step", "optimisation step")
    try:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            mr2ct.models.training.train_run(
                settings, caches["mr"], caches["ct"], caches["validation"], out, progress=False
            )
            seconds = time.perf_counter() - start
    finally:
        timer.restore()
    parts = dict(timer.seconds)
    parts["other (data loading, loop, logging)"] = seconds - sum(parts.values())
    return seconds, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="cyclegan_gc")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--size", type=int, default=6)
    parser.add_argument("--set", nargs="*", default=[], help="train.* overrides, e.g. context_slices=1")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = training_device("cpu")
    config = load_config(ROOT / "config.yaml")
    for item in args.set:
        key, value = item.split("=", 1)
        current = config["train"][key]
        config["train"][key] = (value == "true") if isinstance(current, bool) else type(current)(value)
    fold = splits_from_config(subject_ids(config["data"]["phantom"]["subjects"]), config)[args.fold]
    training = fold.training_set(args.size, config["splits"]["pairing"])
    settings = dataclasses.replace(
        TrainSettings.from_config(config, args.model, args.size, args.fold), steps=args.steps, device="cpu"
    )
    pre = args.workdir / "results" / "preprocessed"
    paired = args.model == "reference_supervised"
    caches = {
        "mr": [pre / f"{s}.npz" for s in (training.subjects if paired else training.mr)],
        "ct": [pre / f"{s}.npz" for s in (training.subjects if paired else training.ct)],
        "validation": [pre / f"{s}.npz" for s in fold.validation],
    }
    size = int(np.load(caches["mr"][0])["mr"].shape[1])
    batch = random_batch(settings, size)
    flops = step_flops(settings, device, batch)
    rates: dict[str, list[float]] = {"minimal": [], "workflow": []}
    parts_total: dict[str, float] = defaultdict(float)
    for round_ in range(args.rounds):
        seconds = minimal_loop(settings, device, batch, args.steps)
        rates["minimal"].append(flops * args.steps / seconds)
        print(json.dumps({"loop": "minimal", "round": round_, "seconds": round(seconds, 2)}), flush=True)
        seconds, parts = workflow_loop(settings, caches)
        rates["workflow"].append(flops * args.steps / seconds)
        for part, value in parts.items():
            parts_total[part] += value / args.rounds
        print(
            json.dumps({"loop": "workflow", "round": round_, "seconds": round(seconds, 2), "parts": parts}), flush=True
        )
    minimal, workflow = float(np.mean(rates["minimal"])), float(np.mean(rates["workflow"]))
    summary = {
        "model": args.model,
        "image_size": size,
        "steps": args.steps,
        "eval_every": settings.eval_every,
        "checkpoint_every": settings.checkpoint_every,
        "precision": mr2ct.models.devices.resolve_precision(settings.amp, device),
        "gflop_per_step": round(flops / 1e9, 2),
        "minimal_gflops": round(minimal / 1e9, 2),
        "workflow_gflops": round(workflow / 1e9, 2),
        "ratio": round(workflow / minimal, 3),
        "set": args.set,
    }
    print(json.dumps(summary), flush=True)
    if args.markdown:
        total = sum(parts_total.values())
        print("\n| part of the workflow loop | s per run | share |\n|---|---|---|")
        for part, value in sorted(parts_total.items(), key=lambda kv: -kv[1]):
            print(f"| {part} | {value:.1f} | {100 * value / total:.1f} % |")
        print(
            f"\nFLOP rate: minimal {summary['minimal_gflops']} GFLOP/s, workflow {summary['workflow_gflops']} "
            f"GFLOP/s, ratio {summary['ratio']}"
        )


if __name__ == "__main__":
    main()
