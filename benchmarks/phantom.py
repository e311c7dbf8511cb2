"""Time phantom cohort generation at the default size.

Usage: python benchmarks/phantom.py [--subjects 6] [--jobs 2]
Prints one JSON line: subjects, jobs, seconds, seconds_per_subject, MB written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mr2ct.data.phantom import PhantomSettings, write_cohort


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_cohort(Path(tmp), args.subjects, seed=42, settings=PhantomSettings(), progress=False, jobs=args.jobs)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file())
    print(
        json.dumps(
            {
                "subjects": args.subjects,
                "jobs": args.jobs,
                "seconds": round(seconds, 2),
                "seconds_per_subject": round(seconds / args.subjects, 2),
                "mb_written": round(size / 1e6, 1),
                "cpu_count": os.cpu_count(),
                "python": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main()
