"""Golden values of the tiny run, and the platform spread their tolerances come from.

Usage: python benchmarks/golden_tiny.py [--workdir DIR] [--write] [--variant NAME ...]
                                        [--extra NAME=CONFIG ...] [--factor 5]

Runs the tiny workflow (``configs/tiny.yaml``, up to ``synthesis_table``) once per variant in
``DIR/<variant>`` and compares two things with the native run:

1. the per-(model, fold) means of MAE, PSNR and boundary MAE over the test subjects
   (``tests/golden/tiny_synthesis.csv``);
2. the losses of every run's first optimisation step (``losses.tsv``, row 1:
   ``tests/golden/tiny_first_step.csv``). The first step's forward passes use the seeded initial
   networks on seeded batches, so they differ between CPUs only in the last bits (up to 4e-6
   relative under AVX2 pinning); from the second step on adversarial training amplifies those
   bits (1e-3 relative at step 2, 7e-2 at step 12). These values pin the objective: a loss term
   dropped, re-weighted or computed on other images moves them by far more than their tolerance.

The tiny config trains in fp32 (``train.amp: none``) on every CPU, so what differs between
machines for one commit and the pinned packages is torch's kernel dispatch; the variants
emulate it on this machine:

- ``native``: this machine as it is;
- ``avx2``: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2`` (an x86 CPU without AVX-512);
- ``avx512``: ``ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=AVX512_CORE`` (AVX-512 without
  VNNI, BF16 or AMX kernels);
- ``bf16``: ``train.amp: bf16`` (for the record: how far mixed precision would move the values).

Emulation does not cover everything another CPU changes (oneDNN also blocks its kernels by cache
size), so ``tests/golden/other_cpus.csv`` records deviations measured on real other CPUs (model,
metric, |value − golden|, the CPU, the code and where it was reported). ``--write`` stores the
native values with a tolerance per cell of the means:

    max(factor × the largest deviation of an emulated platform over the model's folds,
        1.5 × the largest deviation recorded for that model and metric on another CPU,
        1e-4 of the value)

(the deterministic baselines do not depend on the platform: their tolerance is the floor), and
the first-step losses with a relative tolerance of 1e-4 (25 × the emulated spread).
``--extra NAME=CONFIG`` adds a variant with a Snakemake ``--config`` override (e.g. a planted
bug: ``nogc='train={gc_weight: 0}'`` trains the GC arm without GC) and counts the cells it moves
outside the bands.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mr2ct.workflow import snakemake_command

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
METRICS = ("mae", "psnr", "mae_boundary")
PLATFORMS = {
    "native": ({}, []),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, []),
    "avx512": ({"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, []),
}
RECORD = {"bf16": ({}, ["train={amp: bf16}"])}
TABLE = "results/tables/synthesis_metrics.csv"
#: the losses of the first step that the golden file pins (lr is a setting, not a result)
STEP_COLUMNS = ("loss_g", "adv", "cycle", "gc_loss", "mind_loss", "loss_d", "gc_mr_to_ct")
FIRST_STEP_RTOL = 1e-4


def run_tiny(workdir: Path, env: dict[str, str], config: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tiny workflow up to the synthesis table in ``workdir``: its per-(model, fold) means and
    the first-step losses of every run."""
    if not (workdir / TABLE).exists():
        cmd = snakemake_command(workdir, "--profile", str(ROOT / "profiles/local"), TABLE, root=ROOT)
        cmd += ["--configfile", str(ROOT / "configs/tiny.yaml")]
        if config:
            cmd += ["--config", *config]
        subprocess.run(cmd, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    table = pd.read_csv(workdir / TABLE)
    return table.groupby(["model", "fold"])[list(METRICS)].mean(), first_step_losses(workdir)


def first_step_losses(workdir: Path) -> pd.DataFrame:
    """Row 1 of every run's ``losses.tsv``, long: run (``size/model/fold<k>/rep<r>``), column, value."""
    rows = []
    models = workdir / "results" / "models"
    for path in sorted(models.glob("*/*/fold*/rep*/losses.tsv")):
        first = pd.read_csv(path, sep="\t").iloc[0]
        run = path.parent.relative_to(models).as_posix()
        rows += [{"run": run, "column": c, "value": float(first[c])} for c in STEP_COLUMNS if c in first]
    return pd.DataFrame(rows).set_index(["run", "column"])["value"]


def other_cpu_deviation(index: pd.MultiIndex) -> pd.DataFrame:
    """The largest deviation recorded on another CPU per model and metric, on the means' index."""
    path = GOLDEN / "other_cpus.csv"
    out = pd.DataFrame(0.0, index=index, columns=list(METRICS))
    if path.exists():
        recorded = pd.read_csv(path).groupby(["model", "metric"])["deviation"].max()
        for (model, metric), deviation in recorded.items():
            rows = out.index.get_level_values("model") == model
            out.loc[rows, metric] = deviation
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--variant", nargs="*", default=[*PLATFORMS, *RECORD], choices=[*PLATFORMS, *RECORD])
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=CONFIG")
    parser.add_argument("--factor", type=float, default=5.0, help="band = factor x the emulated platform spread")
    parser.add_argument("--write", action="store_true", help="write tests/golden/tiny_{synthesis,first_step}.csv")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mr2ct-golden-"))
    variants = {name: {**PLATFORMS, **RECORD}[name] for name in dict.fromkeys(["native", *args.variant])}
    for item in args.extra:
        name, _, config = item.partition("=")
        variants[name] = ({}, [config])
    runs = {name: run_tiny(workdir / name, env, config) for name, (env, config) in variants.items()}
    means = {name: r[0] for name, r in runs.items()}
    steps = {name: r[1] for name, r in runs.items()}
    native = means["native"]
    platform = [n for n in means if n in PLATFORMS and n != "native"]
    # the largest deviation of any platform variant, pooled over the folds of a model: one
    # emulated platform is a small sample of the spread, and the folds share the model's numerics
    spread = pd.concat([(means[n] - native).abs() for n in platform]).groupby(level=0).max()
    spread = spread.reindex(native.index, level=0)
    pd.set_option("display.width", 200)
    print(f"workdir {workdir}\nnative per-(model, fold) means:\n{native.round(3)}")
    for name, values in means.items():
        if name != "native":
            step_dev = ((steps[name] - steps["native"]).abs() / steps["native"].abs().clip(lower=1e-12)).max()
            print(f"\n{name} − native:\n{(values - native).round(3)}")
            print(f"first step: largest relative deviation {step_dev:.2e}")
    floor = native.abs() * 1e-4
    tolerance = np.maximum(np.maximum(args.factor * spread, 1.5 * other_cpu_deviation(native.index)), floor)
    for name in (n for n in means if n not in PLATFORMS and n not in RECORD):
        outside = ((means[name] - native).abs() > tolerance).sum().sum()
        step_outside = int(((steps[name] - steps["native"]).abs() > FIRST_STEP_RTOL * steps["native"].abs()).sum())
        print(
            f"\n{name}: {outside} of {native.size} mean cells and {step_outside} of {len(steps[name])} "
            "first-step losses outside the bands"
        )
    if args.write:
        rows = [
            {
                "model": model,
                "fold": fold,
                "metric": metric,
                "value": native.loc[(model, fold), metric],
                "tolerance": tolerance.loc[(model, fold), metric],
            }
            for (model, fold) in native.index
            for metric in METRICS
        ]
        GOLDEN.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(GOLDEN / "tiny_synthesis.csv", index=False, float_format="%.6g")
        first = steps["native"].reset_index().assign(rtol=FIRST_STEP_RTOL)
        first.to_csv(GOLDEN / "tiny_first_step.csv", index=False, float_format="%.9g")
        print(f"wrote {GOLDEN / 'tiny_synthesis.csv'} and {GOLDEN / 'tiny_first_step.csv'}")


if __name__ == "__main__":
    main()
