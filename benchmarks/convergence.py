"""Convergence trial: one training run of the default config (plus overrides), scored as the workflow scores it.

Usage: python benchmarks/convergence.py --workdir WORKDIR [--configfile OVERLAY.yaml] [--fold 0] [--size 6]
       [--model cyclegan_gc] [--steps 1000] [--eval-every 100] [--set key=value ...] [--replicate R] --out DIR

WORKDIR is a finished (or data-stage-only: ``snakemake --until preprocess``) run of the default
config (with the same ``--configfile`` overlay, if any); its ``results/preprocessed/`` caches set
the image size (preprocess a second workdir with ``--config preprocess='{image_size: 96}'`` to try
another). Trains with ``mr2ct.models.training.train_run``
(validation MAE at training resolution every ``--eval-every`` steps, in ``DIR/validation.tsv``),
then applies the selected generator to the fold's test subjects, resamples to the CT grid and
prints one JSON line: MAE and boundary MAE at full resolution, the constant baseline of the same
training CTs on the same subjects, and their ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from mr2ct.config import load_config, load_yaml
from mr2ct.data.io import read_volume
from mr2ct.data.phantom import subject_ids
from mr2ct.data.preprocess import load_preprocessed
from mr2ct.data.splits import splits_from_config
from mr2ct.evaluation.metrics import mae, mae_boundary
from mr2ct.models.devices import resolve_precision
from mr2ct.models.synthesis import load_generator, predict_ct, synthetic_volume
from mr2ct.models.training import train_run
from mr2ct.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="cyclegan_gc")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--size", type=int, default=6)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--set", nargs="*", default=[], help="train.* overrides, e.g. augment=false gc_weight=1")
    parser.add_argument("--configfile", type=Path, help="overlay on config.yaml (as snakemake --configfile)")
    parser.add_argument(
        "--replicate",
        type=int,
        default=0,
        help="seed index of the run, as splits.replicates gives the workflow's runs (same cohort, "
        "folds and data; other initial weights and batches: the seed spread); 0 = the workflow's run",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(ROOT / "config.yaml", load_yaml(args.configfile) if args.configfile else None)
    for item in args.set:
        key, value = item.split("=", 1)
        current = config["train"][key]
        config["train"][key] = (value == "true") if isinstance(current, bool) else type(current)(value)
    fold = splits_from_config(subject_ids(config["data"]["phantom"]["subjects"]), config)[args.fold]
    training = fold.training_set(args.size, config["splits"]["pairing"])
    config["splits"]["replicates"] = max(config["splits"]["replicates"], args.replicate + 1)
    settings = dataclasses.replace(
        TrainSettings.from_config(config, args.model, args.size, args.fold, args.replicate),
        steps=args.steps,
        eval_every=args.eval_every,
        checkpoint_every=10**9,
    )
    results = args.workdir / "results"

    def caches(subjects):
        return [results / "preprocessed" / f"{s}.npz" for s in subjects]

    paired = args.model == "reference_supervised"
    mr, ct = (caches(training.subjects),) * 2 if paired else (caches(training.mr), caches(training.ct))
    start = time.perf_counter()
    generator = load_generator(train_run(settings, mr, ct, caches(fold.validation), args.out, progress=False))
    seconds = time.perf_counter() - start
    base = float(np.mean([s.ct_hu(s.ct)[s.mask > 0].mean() for s in map(load_preprocessed, caches(training.ct))]))
    scores = []
    for subject in fold.test:
        cache = load_preprocessed(caches([subject])[0])
        fake = synthetic_volume(cache, predict_ct(generator, cache.mr)).data
        real = read_volume(results / "cohort" / subject / "ct.nii.gz")
        mask = read_volume(results / "cohort" / subject / "mask.nii.gz").data > 0
        bone = np.isin(read_volume(results / "cohort" / subject / "labels.nii.gz").data, (1, 2, 3))
        scores.append(
            (
                mae(real.data, fake, mask),
                mae(real.data, np.full_like(real.data, base), mask),
                mae_boundary(real.data, fake, mask, real.spacing, bone=bone, band_mm=2.0),
            )
        )
    m, const, boundary = np.mean(scores, axis=0)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "fold": args.fold,
                "size": args.size,
                "model": args.model,
                "set": args.set,
                "replicate": args.replicate,
                "seed": settings.seed,
                "precision": resolve_precision(settings.amp, torch.device("cpu")),
                "seconds_per_step": round(seconds / args.steps, 3),
                "test_mae": round(m, 1),
                "test_constant_mae": round(const, 1),
                "test_boundary_mae": round(boundary, 1),
                "ratio": round(m / const, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
