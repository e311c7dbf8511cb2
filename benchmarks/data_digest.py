"""Cost of the data digest that training checkpoints carry (``mr2ct.models.resumable.data_identity``).

Usage: python benchmarks/data_digest.py WORKDIR [--repeat 3]

WORKDIR is a finished run. For every training run under ``results/models/`` the digest
hashes the preprocessed caches it was trained and validated on (its ``train`` job's inputs,
read from the run's provenance record); this times that hashing for every run (best of
``--repeat``, cold and warm page cache alike) and compares the sum with the CPU time of the
``train`` jobs (their ``benchmark:`` files). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from mr2ct.models.resumable import data_identity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = args.workdir / "results"
    runs = []
    for record in sorted((results / "provenance/records").glob("train-*.json")):
        inputs = json.loads(record.read_text())["inputs"]
        roles: dict[str, list[Path]] = {}
        for entry in inputs:
            roles.setdefault(entry["names"][0], []).append(args.workdir / entry["path"])
        runs.append(roles)
    if not runs:
        raise SystemExit(f"{results}: no train records")
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        for roles in runs:
            data_identity(**roles)
        best = min(best, time.perf_counter() - start)
    cpu = sum(pd.read_csv(p, sep="\t")["cpu_time"].sum() for p in (results / "benchmarks/train").rglob("*.tsv"))
    megabytes = sum(p.stat().st_size for roles in runs for paths in roles.values() for p in paths) / 1e6
    print(
        json.dumps(
            {
                "runs": len(runs),
                "hashed_mb": round(megabytes, 1),
                "digest_seconds": round(best, 2),
                "train_cpu_seconds": round(float(cpu), 1),
                "fraction_of_training": round(best / float(cpu), 5) if cpu else None,
            }
        )
    )


if __name__ == "__main__":
    main()
