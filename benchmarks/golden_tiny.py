"""Golden values of the tiny run, and the platform spread their tolerances come from.

Usage: python benchmarks/golden_tiny.py [--workdir DIR] [--write tests/golden/tiny_synthesis.csv]
                                        [--variant NAME ...] [--extra NAME=CONFIG ...]

Runs the tiny workflow (``configs/tiny.yaml``, up to ``synthesis_table``) once per variant in
``DIR/<variant>`` and compares the per-(model, fold) means of MAE, PSNR and boundary MAE over the
test subjects. The tiny config trains in fp32 (``train.amp: none``) on every CPU, so what
differs between machines for one commit and the pinned packages is torch's kernel dispatch;
the variants emulate it:

- ``native``: this machine as it is (kernels dispatched for this CPU);
- ``avx2``: torch's kernels pinned to AVX2 (``ATEN_CPU_CAPABILITY=avx2
  ONEDNN_MAX_CPU_ISA=AVX2``: an older x86 CPU);
- ``bf16``: ``train.amp: bf16`` (for the record: how far mixed precision would move the values).

``--extra NAME=CONFIG`` adds a variant with a Snakemake ``--config`` override (e.g. a planted
bug: ``nogc='train={gc_weight: 0}'`` trains the GC arm without GC) to check that it leaves the
bands. ``--write`` stores the native values with a tolerance per cell:
``max(3 × the largest deviation of the avx2 variant from native over the model's folds, floor)``,
floor 1e-4 of the value (the deterministic baselines do not depend on the platform).
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
METRICS = ("mae", "psnr", "mae_boundary")
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
PLATFORMS = {"native": ({}, []), "avx2": (AVX2, [])}
RECORD = {"bf16": ({}, ["train={amp: bf16}"])}
TABLE = "results/tables/synthesis_metrics.csv"


def run_tiny(workdir: Path, env: dict[str, str], config: list[str]) -> pd.DataFrame:
    """The tiny workflow up to the synthesis table in ``workdir``; its per-(model, fold) means."""
    if not (workdir / TABLE).exists():
        cmd = snakemake_command(workdir, "--profile", str(ROOT / "profiles/local"), TABLE, root=ROOT)
        cmd += ["--configfile", str(ROOT / "configs/tiny.yaml")]
        if config:
            cmd += ["--config", *config]
        subprocess.run(cmd, check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    table = pd.read_csv(workdir / TABLE)
    return table.groupby(["model", "fold"])[list(METRICS)].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--variant", nargs="*", default=[*PLATFORMS, *RECORD], choices=[*PLATFORMS, *RECORD])
    parser.add_argument("--extra", nargs="*", default=[], metavar="NAME=CONFIG")
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mr2ct-golden-"))
    variants = {name: {**PLATFORMS, **RECORD}[name] for name in ["native", *args.variant]}
    for item in args.extra:
        name, _, config = item.partition("=")
        variants[name] = ({}, [config])
    means = {name: run_tiny(workdir / name, env, config) for name, (env, config) in variants.items()}
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
            print(f"\n{name} − native:\n{(values - native).round(3)}")
    floor = native.abs() * 1e-4
    tolerance = np.maximum(3 * spread, floor) if platform else floor
    for name in (n for n in means if n not in PLATFORMS and n not in RECORD):
        outside = ((means[name] - native).abs() > tolerance).sum().sum()
        print(f"\n{name}: {outside} of {native.size} cells outside the bands")
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
        args.write.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.write, index=False, float_format="%.6g")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
