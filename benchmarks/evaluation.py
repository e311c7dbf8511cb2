"""Time the evaluation jobs of a finished run, in one process, one thread, one job at a time.

Usage: OMP_NUM_THREADS=1 python benchmarks/evaluation.py WORKDIR [--check]

Calls the job functions behind ``synthesis_metrics``, ``reference_metrics`` and
``segmentation_metrics_*`` for every such job of WORKDIR's run, with the inputs and params
that its provenance record lists (exactly what the job received), writing to a scratch
folder, and prints one JSON line per rule with the summed seconds (Python start-up and
Snakemake overhead excluded). With ``--check`` each table part is compared byte for byte
with the one the run wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from mr2ct.evaluation.scoring import (
    reference_metrics_job,
    segmentation_metrics_job,
    subject_inputs,
    synthesis_metrics_job,
)


def named_inputs(record: dict) -> dict[str, list[str]]:
    """A record's inputs by the name the rule gave them (lists, in the rule's order)."""
    named: dict[str, list[str]] = {}
    for entry in record["inputs"]:
        for name in entry["names"]:
            named.setdefault(name, []).append(entry["path"])
    return named


def job_call(record: dict):
    """The package call of one recorded evaluation job, as a function of its output path."""
    i, p, w = named_inputs(record), record["params"], record["wildcards"]
    one = {k: v[0] for k, v in i.items()}
    if record["rule"] == "synthesis_metrics":
        subjects = subject_inputs(p["subjects"], ct=i["ct"], mask=i["mask"], labels=i.get("labels"))
        return lambda out: synthesis_metrics_job(
            subjects,
            one.get("label_table"),
            one["synthetic"],
            int(w["size"]),
            w["model"],
            int(w["fold"]),
            p["band_mm"],
            out,
            int(w.get("replicate", 0)),
        )
    if record["rule"] == "reference_metrics":
        ids = p["subjects"]
        test = subject_inputs(
            ids["test"], mr=i["test_mr"], ct=i["ct"], mask=i["mask"], labels=i.get("labels"), cache=i["caches"]
        )
        mr = subject_inputs(ids["mr"], mr=i["train_mr"], mask=i["train_mr_mask"], cache=i["train_mr_caches"])
        ct = subject_inputs(ids["ct"], ct=i["train_ct"], mask=i["train_ct_mask"])
        return lambda out: reference_metrics_job(
            test, mr, ct, one.get("label_table"), int(w["size"]), int(w["fold"]), p["band_mm"], out
        )
    subjects = subject_inputs(p["subjects"], labels=i["reference"])
    size = int(w["size"]) if "size" in w else None
    return lambda out: segmentation_metrics_job(
        subjects,
        one["label_table"],
        one["predicted"],
        out,
        int(w["fold"]),
        size,
        w.get("model", "real_ct"),
        int(w.get("replicate", 0)),
    )


RULES = ("synthesis_metrics", "reference_metrics", "segmentation_metrics_real_ct", "segmentation_metrics_synthetic_ct")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--check", action="store_true", help="compare every part with the run's own")
    args = parser.parse_args()
    os.chdir(args.workdir)
    scratch = Path(tempfile.mkdtemp(prefix="mr2ct-eval-"))
    records = [json.loads(p.read_text()) for p in sorted(Path("results/provenance/records").glob("*.json"))]
    latest: dict[str, dict] = {}  # the current record of each table part (a rerun leaves older records)
    for record in sorted(records, key=lambda r: r["ended_at"]):
        if record["rule"] in RULES:
            latest[record["outputs"][0]["path"]] = record
    totals: dict[str, list[float]] = {}
    mismatched = []
    for part, record in sorted(latest.items()):
        rule = "segmentation_metrics" if record["rule"].startswith("segmentation") else record["rule"]
        out = scratch / part
        out.parent.mkdir(parents=True, exist_ok=True)
        call = job_call(record)
        start = time.perf_counter()
        call(out)
        totals.setdefault(rule, []).append(time.perf_counter() - start)
        if args.check and Path(part).read_bytes() != out.read_bytes():
            mismatched.append(part)
    for rule, seconds in totals.items():
        summary = {
            "rule": rule,
            "jobs": len(seconds),
            "seconds": round(sum(seconds), 1),
            "longest_s": round(max(seconds), 2),
        }
        print(json.dumps(summary), flush=True)
    if args.check:
        print(json.dumps({"parts_differing_from_the_run": mismatched}), flush=True)


if __name__ == "__main__":
    main()
