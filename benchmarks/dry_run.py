"""Time `snakemake -n` (DAG construction) for a config overlay and count its jobs.

Usage: python benchmarks/dry_run.py [configs/paper.yaml] [--repeat 3]
Prints one JSON line: config, best wall seconds of the dry run, jobs per rule.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", nargs="?", default="configs/paper.yaml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    times, out = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", tmp,
                 "--configfile", str(ROOT / args.config), "-n", "--quiet", "rules", "--cores", "2"],
                capture_output=True, text=True, check=True, cwd=ROOT,
            )
            times.append(time.perf_counter() - start)
            out = result.stdout
    jobs = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", out, re.M)}
    print(json.dumps({"config": args.config, "dry_run_seconds": round(min(times), 2), "jobs": jobs}))


if __name__ == "__main__":
    main()
