"""Time the evaluation jobs of a finished run, in one process, one thread, one job at a time.

Usage: OMP_NUM_THREADS=1 python benchmarks/evaluation.py WORKDIR [--config config.yaml] [--check]

Calls the job functions behind ``synthesis_metrics``, ``reference_metrics`` and
``segmentation_metrics_*`` for every job of WORKDIR's run (the default run: 27 + 9 + 30
jobs), writing to a scratch folder, and prints one JSON line per rule with the summed
seconds (Python start-up and Snakemake overhead excluded). With ``--check`` each table
part is compared byte for byte with the one the run wrote (``results/metrics/``).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from mr2ct.config import load_config
from mr2ct.evaluation import reference_metrics_job, segmentation_metrics_job, synthesis_metrics_job

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--config", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--check", action="store_true", help="compare every part with the run's own")
    args = parser.parse_args()
    config = load_config(args.config)
    os.chdir(args.workdir)
    folds = range(config["splits"]["folds"])
    sizes = config["splits"]["sizes"]
    models = config["models"]
    scratch = Path(tempfile.mkdtemp(prefix="mr2ct-eval-"))
    jobs = []
    for size in sizes:
        for fold in folds:
            jobs.append(
                (
                    "reference_metrics",
                    f"metrics/synthesis/{size}/references/fold{fold}.csv",
                    lambda out, s=size, f=fold: reference_metrics_job(config, s, f, out),
                )
            )
            for model in models:
                jobs.append(
                    (
                        "synthesis_metrics",
                        f"metrics/synthesis/{size}/{model}/fold{fold}.csv",
                        lambda out, s=size, m=model, f=fold: synthesis_metrics_job(
                            config, s, m, f, f"results/synthetic_ct/{s}/{m}/fold{f}", out
                        ),
                    )
                )
                jobs.append(
                    (
                        "segmentation_metrics",
                        f"metrics/segmentation/{size}/{model}/fold{fold}.csv",
                        lambda out, s=size, m=model, f=fold: segmentation_metrics_job(
                            config, f, f"results/labels/{s}/{m}/fold{f}", out, s, m
                        ),
                    )
                )
    for fold in folds:
        jobs.append(
            (
                "segmentation_metrics",
                f"metrics/segmentation/real_ct/fold{fold}.csv",
                lambda out, f=fold: segmentation_metrics_job(config, f, f"results/labels/real_ct/fold{f}", out),
            )
        )
    totals: dict[str, list[float]] = {}
    mismatched = []
    for rule, part, job in jobs:
        out = scratch / part
        out.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        job(out)
        totals.setdefault(rule, []).append(time.perf_counter() - start)
        theirs = Path("results") / part
        if args.check and theirs.exists() and theirs.read_bytes() != out.read_bytes():
            mismatched.append(part)
    for rule, seconds in totals.items():
        print(
            json.dumps(
                {
                    "rule": rule,
                    "jobs": len(seconds),
                    "seconds": round(sum(seconds), 1),
                    "longest_s": round(max(seconds), 2),
                }
            ),
            flush=True,
        )
    if args.check:
        print(json.dumps({"parts_differing_from_the_run": mismatched}), flush=True)


if __name__ == "__main__":
    main()
