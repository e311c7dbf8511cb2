"""Time `snakemake -n` (DAG construction) for a config overlay and count its jobs.

Usage: python benchmarks/dry_run.py [configs/paper.yaml] [--repeat 3] [--profile profiles/slurm]
Prints one JSON line: config, best wall seconds of the dry run, jobs per rule and, with a
profile that groups jobs (profiles/slurm), the number of cluster submissions: group jobs
plus ungrouped non-local jobs.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import time
from pathlib import Path

from mr2ct.workflow import snakemake_command

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", default="configs/paper.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", default=None, help="e.g. profiles/slurm (no job is submitted: -n)")
    args = parser.parse_args()
    profile = ["--profile", str(ROOT / args.profile)] if args.profile else ["--cores", "2"]
    times, out = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = subprocess.run(
                snakemake_command(tmp, "--configfile", str(ROOT / args.config), "-n", *profile, root=ROOT),
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            times.append(time.perf_counter() - start)
            out = result.stdout + result.stderr
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", out, re.M)}
    result = {"config": args.config, "profile": args.profile, "dry_run_seconds": round(min(times), 2), "jobs": jobs}
    if args.profile:
        groups = len(re.findall(r"Group job \w+", out))
        # grouped jobs are indented under their group; the target rule `all` runs in the Snakemake process
        ungrouped = len(re.findall(r"^rule (?!all:)\w+:", out, re.M))
        result["submissions"] = groups + ungrouped
    print(json.dumps(result))


if __name__ == "__main__":
    main()
