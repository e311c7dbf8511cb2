"""Mutation score per module from a mutmut 3 run (settings: ``[tool.mutmut]`` in pyproject.toml).

Usage: pip install mutmut==3.8.1 && mutmut run [--max-children 2] ["mr2ct.losses*" ...]
       python benchmarks/mutation_score.py [--mutants mutants] [--survivors]

Reads mutmut's per-file results (``mutants/mr2ct/*.py.meta``) and prints one markdown row per
mutated module: mutants in all, killed (a test failed, or the mutant timed out), survived, not
covered by the fast tier ("no tests"), not yet checked; the score over the checked mutants the
fast tier covers, and the strict score that counts uncovered mutants as survivors.
``--survivors`` lists the surviving mutants by function (``mutmut show NAME`` prints a diff).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, a pytest internal error, a timeout
NO_TESTS = {5, 33}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", action="store_true")
    args = parser.parse_args()
    print("| module | mutants | killed | survived | no tests | not checked | score (covered) | strict score |")
    print("|---|---|---|---|---|---|---|---|")
    survivors: Counter[str] = Counter()
    for meta in sorted(args.mutants.glob("mr2ct/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        killed = sum(code in KILLED for code in codes.values())
        survived = [key for key, code in codes.items() if code == 0]
        no_tests = sum(code in NO_TESTS for code in codes.values())
        unchecked = sum(code is None for code in codes.values())
        covered = killed + len(survived)
        strict = covered + no_tests
        print(
            f"| {meta.name.removesuffix('.meta')} | {len(codes)} | {killed} | {len(survived)} | {no_tests} | "
            f"{unchecked} | {killed / covered:.1%} | {killed / strict:.1%} |"
            if covered
            else f"| {meta.name.removesuffix('.meta')} | {len(codes)} | 0 | 0 | {no_tests} | {unchecked} | – | – |"
        )
        survivors.update(key.rsplit("__mutmut_", 1)[0] for key in survived)
    if args.survivors:
        for function, count in survivors.most_common():
            print(f"{count:4d}  {function}")


if __name__ == "__main__":
    main()
