"""Mutation score per module from a mutmut 3 run (settings: ``[tool.mutmut]`` in pyproject.toml).

Usage: pip install mutmut==3.8.1 && mutmut run [--max-children 2] ["mr2ct.models.losses*" ...]
       python benchmarks/mutation_score.py [--mutants mutants] [--survivors]
       mutmut run --max-children 2 $(python benchmarks/mutation_score.py --sample 50 training audit)

Reads mutmut's per-file results (``mutants/mr2ct/**/*.py.meta``) and prints one markdown row per
mutated module: mutants in all, killed (a test failed, or the mutant timed out), survived, not
covered by the fast tier ("no tests"), not yet checked; the score over the checked mutants the
fast tier covers, and the strict score that counts uncovered mutants as survivors.
``--survivors`` lists the surviving mutants by function (``mutmut show NAME`` prints a diff).

A full run of the slow modules takes hours on two cores; ``--sample N MODULE...`` prints the
names of N mutants of each module drawn at random (``--seed``) from those not yet checked, to
give to ``mutmut run``. While a module is only partly checked, its row adds the 95 % Wilson
interval of the covered score, read as an estimate for the whole module (the checked
mutants are then a uniform sample of it).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255}  # a failing test, a pytest internal error, a timeout
NO_TESTS = {5, 33}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def sample(mutants: Path, modules: list[str], n: int, seed: int) -> list[str]:
    """``n`` unchecked mutant names per module (``models/training`` → ``mutants/mr2ct/models/training.py.meta``)."""
    rng = random.Random(seed)
    names = []
    for module in modules:
        codes = json.loads((mutants / "mr2ct" / f"{module}.py.meta").read_text())["exit_code_by_key"]
        unchecked = sorted(key for key, code in codes.items() if code is None)
        names += rng.sample(unchecked, min(n, len(unchecked)))
    return names


def module_name(meta: Path, mutants: Path) -> str:
    """``mutants/mr2ct/models/training.py.meta`` -> ``models/training.py``."""
    return meta.relative_to(mutants / "mr2ct").as_posix().removesuffix(".meta")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--survivors", action="store_true")
    parser.add_argument("--sample", type=int, metavar="N", help="print N unchecked mutant names per module")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("modules", nargs="*", help="with --sample: modules (e.g. models/training)")
    args = parser.parse_args()
    if args.sample:
        print("\n".join(sample(args.mutants, args.modules, args.sample, args.seed)))
        return
    print("| module | mutants | killed | survived | no tests | not checked | score (covered) | strict score |")
    print("|---|---|---|---|---|---|---|---|")
    survivors: Counter[str] = Counter()
    for meta in sorted(args.mutants.glob("mr2ct/**/*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        killed = sum(code in KILLED for code in codes.values())
        survived = [key for key, code in codes.items() if code == 0]
        no_tests = sum(code in NO_TESTS for code in codes.values())
        unchecked = sum(code is None for code in codes.values())
        covered = killed + len(survived)
        strict = covered + no_tests
        estimate = ""
        if covered and unchecked:
            low, high = wilson(killed, covered)
            estimate = f" (95 % CI {low:.0%}–{high:.0%})"
        print(
            f"| {module_name(meta, args.mutants)} | {len(codes)} | {killed} | {len(survived)} | {no_tests} | "
            f"{unchecked} | {killed / covered:.1%}{estimate} | {killed / strict:.1%} |"
            if covered
            else f"| {module_name(meta, args.mutants)} | {len(codes)} | 0 | 0 | {no_tests} | {unchecked} | – | – |"
        )
        survivors.update(key.rsplit("__mutmut_", 1)[0] for key in survived)
    if args.survivors:
        for function, count in survivors.most_common():
            print(f"{count:4d}  {function}")


if __name__ == "__main__":
    main()
