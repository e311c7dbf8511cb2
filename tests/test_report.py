"""The report's text: Markdown tables of mean ± sd (mr2ct.report.tables) and the findings, the
README's results and the report's verdict (mr2ct.report.findings)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from mr2ct.evaluation import statistics as S
from mr2ct.report.tables import to_markdown


def test_to_markdown_renders_mean_pm_sd():
    table = pd.DataFrame(
        {
            "size": [2, 2, 4],
            "model": ["cyclegan", "cyclegan_gc", "cyclegan"],
            "mae": [100.04, 90.0, 80.0],
            "psnr": [25.123, 26.0, np.nan],
        }
    )
    table = pd.concat([table, table.assign(mae=table["mae"] + 2.0, psnr=table["psnr"] + 1.0)], ignore_index=True)
    table = pd.concat([table, pd.DataFrame([{"size": 6, "model": "cyclegan", "mae": 70.0, "psnr": 30.0}])])
    summary = S.summary_table(table, metrics=("mae", "psnr"))
    text = to_markdown(summary, model_labels={"cyclegan": "CycleGAN"})
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 2 + len(summary)
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["size", "model", "n", "MAE [HU]", "PSNR [dB]"]
    assert set(lines[1].replace("|", "").replace(" ", "")) <= {"-", ":"}
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    body = "\n".join(lines[2:])
    assert "CycleGAN" in body and "cyclegan_gc" in body
    assert "101.0 ± 1.4" in body  # mae 100.04 and 102.04: 1 decimal
    assert "25.62 ± 0.71" in body  # psnr 25.123 and 26.123: 2 decimals
    assert re.search(r"\|\s+70\.0\s+\|", body)  # a single value: no sd
    assert "–" in body  # all-NaN PSNR at size 4


def test_a_mean_over_fewer_values_says_so_and_empty_predictions_are_counted():
    """ASSD exists only where a structure was predicted: the summary shows (k/n) and counts the
    empty predictions, instead of a mean over a silently smaller set."""
    table = pd.DataFrame(
        {
            "size": [2] * 4,
            "model": ["cyclegan_gc"] * 4,
            "dice": [0.9, 0.8, 0.0, 0.0],
            "assd_mm": [1.0, 2.0, np.nan, np.nan],
            "empty_prediction": [0, 0, 1, 1],
        }
    )
    summary = S.summary_table(table, metrics=("dice", "assd_mm"), counts=("empty_prediction",))
    row = summary.iloc[0]
    assert (row["n"], row["assd_mm_n"], row["dice_n"], row["empty_prediction_sum"]) == (4, 2, 4, 2)
    text = to_markdown(summary)
    header = [c.strip() for c in text.split("\n")[0].strip("|").split("|")]
    assert header[-1] == "empty predictions"
    body = text.split("\n")[2]
    assert "1.50 ± 0.71 (2/4)" in body and "(4/4)" not in body
    assert body.rstrip(" |").endswith("2")


def test_readme_findings_read_the_tables_right(tmp_path):
    """A constructed run where the answers are known: GC lowers boundary MAE by ~30 HU,
    more data lowers cyclegan_gc's MAE by ~40 HU and leaves cyclegan's unchanged, and the
    constant baseline sits at 100 HU."""
    from mr2ct.report.findings import readme_results, statistics_job

    rng = np.random.default_rng(3)
    rows = []
    for fold in range(3):
        for k in range(4):
            subject = f"s{fold}{k}"
            for size in (2, 6):
                noise = rng.normal(0, 2, 4)
                rows += [
                    dict(
                        size=size,
                        model="baseline_constant",
                        fold=fold,
                        subject=subject,
                        mae=100 + noise[0],
                        psnr=25,
                        ssim=0.8,
                        mae_boundary=600,
                    ),
                    dict(
                        size=size,
                        model="cyclegan",
                        fold=fold,
                        subject=subject,
                        mae=150 + noise[1],
                        psnr=24,
                        ssim=0.7,
                        mae_boundary=560 + noise[2],
                    ),
                    dict(
                        size=size,
                        model="cyclegan_gc",
                        fold=fold,
                        subject=subject,
                        mae=(130 if size == 2 else 90) + noise[3],
                        psnr=26,
                        ssim=0.8,
                        mae_boundary=530 + noise[2] + rng.normal(0, 1),
                    ),
                ]
    synthesis = pd.DataFrame(rows)
    synthesis.to_csv(tmp_path / "synthesis.csv", index=False)
    statistics_job(
        tmp_path / "synthesis.csv",
        None,
        tmp_path / "stats.csv",
        tmp_path / "summary.csv",
        tmp_path / "summary.md",
        tmp_path / "findings.md",
        tmp_path / "findings.rst",
        seed=0,
    )
    block = readme_results(tmp_path / "summary.md", tmp_path / "stats.csv", tmp_path / "findings.md")
    lines = block.splitlines()
    gc_data = next(line for line in lines if "More training data" in line and "(cyclegan_gc)" in line)
    assert gc_data.endswith(": lower.") and "(n = 12)" in gc_data
    no_gc_data = next(line for line in lines if "More training data" in line and "(cyclegan)" in line)
    assert no_gc_data.endswith("no resolved difference.")
    boundary = [line for line in lines if "GC → lower boundary MAE" in line]
    assert len(boundary) == 2 and all(line.endswith("lower with GC.") for line in boundary)
    ratio_row = next(line for line in lines if line.startswith("| cyclegan_gc |"))
    ratios = [float(v) for v in ratio_row.strip("|").split("|")[1:]]
    assert ratios == pytest.approx([1.30, 0.90], abs=0.03)  # 130 and 90 HU against a 100 HU baseline
    verdict = (tmp_path / "findings.rst").read_text()
    assert "1. *More training data improves accuracy*: reproduced for CycleGAN + GC" in verdict
    assert "MAE reproduced (size 2: lower with GC; size 6: lower with GC)" in verdict
    assert "boundary MAE reproduced" in verdict
    assert "3. *Synthetic CT is usable for segmentation*: not run" in verdict
    assert verdict.strip() in block  # the README and the report's front page say the same


def test_findings_call_a_difference_resolved_only_when_ci_and_wilcoxon_agree():
    from mr2ct.report.findings import findings

    synthesis = pd.DataFrame(
        [dict(size=2, model=m, fold=0, subject="s", mae=100.0) for m in ("baseline_constant", "cyclegan_gc")]
    )
    row = dict(
        experiment="synthesis",
        metric="mae_boundary",
        size=2,
        mean_a=532.3,
        mean_b=541.3,
        mean_difference=-9.0,
        ci_low=-17.0,
        ci_high=-1.2,
        n_pairs=12,
    )
    lines = findings(
        synthesis, pd.DataFrame([{**row, "wilcoxon_p": 0.064}, {**row, "size": 4, "wilcoxon_p": 0.001}]), None
    )
    boundary = [line for line in lines if "boundary MAE" in line]
    assert boundary[0].endswith("no resolved difference (the bootstrap CI excludes zero, but Wilcoxon p ≥ 0.05).")
    assert boundary[1].endswith("lower with GC.")


def test_dice_by_structure_shows_each_source_at_the_largest_size():
    from mr2ct.report.findings import dice_by_structure_markdown

    rows = []
    for source, model, size, dice in (
        ("real_ct", "", np.nan, 0.9),
        ("synthetic_ct", "cyclegan_gc", 6, 0.7),
        ("synthetic_ct", "cyclegan_gc", 2, 0.1),  # not the largest size: left out
        ("synthetic_ct", "cyclegan", 6, 0.4),
    ):
        for structure, shift in (("pelvis", 0.0), ("obturator_internus_left", -0.2)):
            rows.append(dict(source=source, model=model, size=size, structure=structure, dice=dice + shift))
    lines = dice_by_structure_markdown(pd.DataFrame(rows))
    assert lines[0].startswith("### Dice per structure (size 6")
    assert lines[2] == "| structure | real CT | CycleGAN | CycleGAN + GC |"
    assert lines[4:] == ["| pelvis | 0.900 | 0.400 | 0.700 |", "| obturator_internus_left | 0.700 | 0.200 | 0.500 |"]
