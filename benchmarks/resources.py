"""Time, memory and disk of a finished workflow run, from its ``benchmark:`` files.

Usage: python benchmarks/resources.py [WORKDIR] [--cores 2] [--markdown]

Reads every ``results/benchmarks/**/*.tsv`` (Snakemake's per-job measurements: wall
seconds ``s``, peak resident memory ``max_rss`` in MB, ``cpu_time``) and prints, per rule:
jobs, summed wall and CPU seconds, the largest single-job wall time and peak RSS. The
workflow's peak memory is bounded by the sum of the ``--cores`` largest job peaks (at most
that many one-thread jobs run at once). Also the disk use of ``results/`` by folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def _rule_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else path.stem


def _disk(folder: Path) -> dict[str, float]:
    sizes: dict[str, float] = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            top = path.relative_to(folder).parts[0]
            sizes[top] = sizes.get(top, 0.0) + path.stat().st_size / 1e6
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", nargs="?", default=".")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead of JSON lines")
    args = parser.parse_args()
    root = Path(args.workdir) / "results" / "benchmarks"
    files = sorted(root.rglob("*.tsv"))
    if not files:
        sys.exit(f"{root}: no benchmark files")
    rows = []
    for path in files:
        table = pd.read_csv(path, sep="\t")
        last = table.iloc[-1]
        rows.append(
            {
                "rule": _rule_of(path, root),
                "s": float(last["s"]),
                "max_rss": float(last["max_rss"]),
                "cpu_time": float(last["cpu_time"]),
            }
        )
    frame = pd.DataFrame(rows)
    per_rule = frame.groupby("rule").agg(
        jobs=("s", "size"),
        wall_s=("s", "sum"),
        cpu_s=("cpu_time", "sum"),
        max_wall_s=("s", "max"),
        max_rss_mb=("max_rss", "max"),
    )
    per_rule = per_rule.sort_values("cpu_s", ascending=False)
    peak_bound = frame["max_rss"].nlargest(args.cores).sum()
    disk = _disk(Path(args.workdir) / "results")
    summary = {
        "jobs": len(frame),
        "cpu_s": round(frame["cpu_time"].sum(), 1),
        "job_wall_s": round(frame["s"].sum(), 1),
        "largest_job_rss_mb": round(frame["max_rss"].max(), 1),
        f"peak_rss_bound_{args.cores}_jobs_mb": round(peak_bound, 1),
        "results_mb": round(sum(disk.values()), 1),
        "results_mb_by_folder": {k: round(v, 1) for k, v in disk.items()},
    }
    if args.markdown:
        print("| rule | jobs | wall s (sum) | CPU s (sum) | longest job s | peak RSS MB |")
        print("|---|---|---|---|---|---|")
        for rule, r in per_rule.iterrows():
            print(
                f"| {rule} | {int(r.jobs)} | {r.wall_s:.0f} | {r.cpu_s:.0f} | {r.max_wall_s:.0f} | {r.max_rss_mb:.0f} |"
            )
        print()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
