"""Cost of provenance on a finished run, against the run's job time.

Usage: python benchmarks/provenance_overhead.py [WORKDIR] [--wall SECONDS]
       [--figure results/figures/mae_vs_training_size.png]

What a job pays for its record (``mr2ct.provenance.records.begin_job`` / ``write_job_record``):
hashing each *output* once (inputs reuse the hash their producer recorded, matched by size
and mtime), the code version (git), software versions and host, and writing the JSON. This
script repeats that work for every record of the run in ``WORKDIR`` — outputs hashed afresh
(cold page cache not forced), fixed per-job parts timed and multiplied by the number of
jobs — and compares it with the summed job durations of the records and, with ``--wall``,
with the run's wall time on its cores. Then it times ``mr2ct audit --verify`` of one
figure (every file of its lineage hashed again). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mr2ct.provenance import records as provenance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", nargs="?", default=".")
    parser.add_argument("--wall", type=float, default=None, help="wall time of the run in seconds")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--figure", default="results/figures/mae_vs_training_size.png")
    args = parser.parse_args()
    workdir = Path(args.workdir).resolve()
    records = [json.loads(p.read_text()) for p in sorted((workdir / "results/provenance/records").glob("*.json"))]
    if not records:
        sys.exit(f"{workdir}: no provenance records under results/provenance/records")

    started = time.perf_counter()
    hashed_bytes = 0
    for record in records:
        for output in record["outputs"]:
            path = workdir / output["path"]
            files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
            for file in files:
                if file.exists():
                    provenance.sha256_file(file)
                    hashed_bytes += file.stat().st_size
    hashing = time.perf_counter() - started

    root = Path(__file__).resolve().parents[1]
    repeats = 5
    started = time.perf_counter()
    for _ in range(repeats):
        provenance.code_version(root)
        provenance.software_versions()
        provenance.host_info()
    fixed_per_job = (time.perf_counter() - started) / repeats

    total = hashing + fixed_per_job * len(records)
    job_seconds = sum(float(r.get("duration_s") or 0.0) for r in records)
    result = {
        "records": len(records),
        "output_bytes": hashed_bytes,
        "hash_outputs_s": round(hashing, 2),
        "fixed_per_job_s": round(fixed_per_job, 4),
        "provenance_s": round(total, 2),
        "job_s": round(job_seconds, 1),
        "fraction_of_job_time": round(total / job_seconds, 4) if job_seconds else None,
    }
    if args.wall:
        result["fraction_of_wall_x_cores"] = round(total / (args.wall * args.cores), 4)
    figure = workdir / args.figure
    if figure.exists():
        started = time.perf_counter()
        audit = subprocess.run(
            [sys.executable, "-m", "mr2ct", "audit", "--verify", str(figure)],
            cwd=workdir,
            capture_output=True,
            text=True,
            env={**os.environ},
        )
        result["audit_verify_s"] = round(time.perf_counter() - started, 2)
        result["audit_verify_rc"] = audit.returncode
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
