"""The report stage: statistics and summary tables, every table-based figure, the README results.

Job functions called by ``rules/report.smk`` (and ``mr2ct readme-results``):
they read the aggregated tables under ``results/tables/`` and the per-run loss
tables, and write the statistics, summaries and figures.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mr2ct.data.io import atomic_write_text, read_table
from mr2ct.evaluation.metrics import BONE_PREFIXES
from mr2ct.evaluation.scoring import write_table
from mr2ct.evaluation.statistics import SEGMENTATION_METRICS, SYNTHESIS_METRICS
from mr2ct.settings import ARMS, MODEL_LABELS, MODELS

__all__ = [
    "README_MARKERS",
    "figures_job",
    "provenance_summary_job",
    "readme_results",
    "statistics_job",
    "update_readme",
]

README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
SURFACE_DISTANCE_NOTE = (
    "(k/n): the mean is over the k of n structures × subjects where the distance exists; "
    "ASSD and HD95 do not exist for a structure that was not predicted at all (counted in "
    "*empty prediction*) or is absent from the reference."
)


def statistics_job(
    synthesis_csv, segmentation_csv, out_statistics, out_summary, out_markdown, out_findings, out_verdict, seed: int
) -> list[Path]:
    """Paired GC-vs-no-GC statistics, mean ± sd summaries (CSV and Markdown), the paper's findings
    checked against them (Markdown, for the README) and their verdict (reStructuredText-safe lines
    for the report's front page); one computation, with the config's seed, for both."""
    from mr2ct.evaluation.statistics import segmentation_statistics, statistics_table, summary_table
    from mr2ct.report.tables import to_markdown

    synthesis = read_table(synthesis_csv)
    segmentation = None
    parts = [statistics_table(synthesis, SYNTHESIS_METRICS, seed=seed).assign(experiment="synthesis")]
    summaries = [summary_table(synthesis, SYNTHESIS_METRICS, by=("size", "model")).assign(experiment="synthesis")]
    over = "folds, seeds" if "replicate" in synthesis and synthesis["replicate"].max() > 0 else "folds"
    markdown = [
        f"### Synthesis accuracy (mean ± sd over {over} and test subjects)",
        "",
        to_markdown(summary_table(synthesis, SYNTHESIS_METRICS, by=("size", "model"))),
    ]
    if segmentation_csv:
        segmentation = read_table(segmentation_csv)
        parts.append(segmentation_statistics(segmentation, seed=seed).assign(experiment="segmentation"))
        seg_summary = summary_table(
            _with_source_model(segmentation), SEGMENTATION_METRICS, by=("size", "model"), counts=("empty_prediction",)
        )
        summaries.append(seg_summary.assign(experiment="segmentation"))
        markdown += [
            "",
            f"### Segmentation of real and synthetic CT (mean ± sd over structures, {over} and subjects)",
            "",
            to_markdown(seg_summary),
            SURFACE_DISTANCE_NOTE,
            "",
            *dice_by_structure_markdown(segmentation),
        ]
    statistics = pd.concat(parts, ignore_index=True)
    written = [
        write_table(statistics, out_statistics),
        write_table(pd.concat(summaries, ignore_index=True), out_summary),
    ]
    written.append(atomic_write_text(out_markdown, "\n".join(markdown) + "\n"))
    lines = findings(synthesis, statistics, segmentation, seed=seed)
    written.append(atomic_write_text(out_findings, "\n".join(lines) + "\n"))
    written.append(atomic_write_text(out_verdict, "\n".join(verdict(lines)) + "\n"))
    return written


def dice_by_structure_markdown(segmentation: pd.DataFrame) -> list[str]:
    """Mean Dice per structure at the largest training size, one column per source (real CT and each
    model's synthetic CT), so that a reader sees which structures fail on synthetic CT."""
    largest = segmentation["size"].dropna().max()
    real = segmentation[segmentation["source"] == "real_ct"].assign(model="real_ct")
    synthetic = segmentation[(segmentation["source"] == "synthetic_ct") & (segmentation["size"] == largest)]
    table = pd.concat([real, synthetic]).groupby(["structure", "model"], sort=False)["dice"].mean().unstack()
    columns = [m for m in ("real_ct", *MODELS) if m in table.columns]
    order = list(dict.fromkeys(segmentation["structure"]))
    lines = [
        f"### Dice per structure (size {largest:g}; mean over folds, seeds and subjects)",
        "",
        "| structure | " + " | ".join(MODEL_LABELS.get(m, m) for m in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for structure in order:
        lines.append(f"| {structure} | " + " | ".join(f"{table.loc[structure, m]:.3f}" for m in columns) + " |")
    return lines


def verdict(findings_lines: Sequence[str]) -> list[str]:
    """The verdict part of :func:`findings` (from its "Verdict per finding" line on)."""
    start = next((i for i, line in enumerate(findings_lines) if line.startswith("**Verdict")), len(findings_lines))
    return list(findings_lines[start:])


def _with_source_model(segmentation: pd.DataFrame) -> pd.DataFrame:
    """Real-CT rows repeated for every size, so each size's summary has its real-CT reference."""
    real = segmentation[segmentation["source"] == "real_ct"]
    synthetic = segmentation[segmentation["source"] != "real_ct"]
    sizes = sorted(synthetic["size"].dropna().unique())
    repeated = [real.assign(size=size) for size in sizes] or [real]
    return pd.concat([synthetic, *repeated], ignore_index=True)


def figures_job(
    synthesis_csv,
    segmentation_csv,
    loss_paths: Sequence[str | os.PathLike],
    runs: Sequence[Sequence],
    out_dir,
    seed: int,
) -> list[Path]:
    """Figures 1–3 and 5–7 (PNG and PDF) from the tables and the runs' loss tables."""
    from mr2ct.report.figures import read_loss_tables, render_all

    synthesis = read_table(synthesis_csv)
    segmentation = read_table(segmentation_csv) if segmentation_csv else None
    return render_all(synthesis, segmentation, read_loss_tables(loss_paths, runs), out_dir, seed=seed)


def provenance_summary_job(workdir: str | os.PathLike, out_csv: str | os.PathLike) -> Path:
    """``provenance_summary.csv``: the code versions and configs behind the run's records."""
    from mr2ct.provenance.audit import code_summary

    columns = [
        "commit",
        "dirty",
        "diff_sha256",
        "version",
        "config_sha256",
        "records",
        "rules",
        "first_started",
        "last_ended",
    ]
    return write_table(pd.DataFrame(code_summary(workdir), columns=columns), out_csv)


def _verdict(row, alpha: float = 0.05) -> str:
    """Reading of a paired difference (new − old) in a comparison row: its 95 % bootstrap CI over
    subjects and its Wilcoxon test must agree and, for replicated runs, its two-level interval
    over seeds and subjects (``seed_ci_low``, ``seed_ci_high``) must exclude zero too: a
    difference between two trained models counts only when it is larger than what another seed
    alone gives."""
    direction = "lower" if row.ci_high < 0 else "higher" if row.ci_low > 0 else None
    if direction is None:
        return "no resolved difference"
    if not row.wilcoxon_p < alpha:
        return f"no resolved difference (the bootstrap CI excludes zero, but Wilcoxon p ≥ {alpha:g})"
    low, high = getattr(row, "seed_ci_low", math.nan), getattr(row, "seed_ci_high", math.nan)
    if np.isfinite(low) and np.isfinite(high) and not (high < 0 if direction == "lower" else low > 0):
        return "no resolved difference (within the spread between seeds)"
    return direction


def _with_gc(verdict: str) -> str:
    return f"{verdict} with GC" if verdict in ("lower", "higher") else verdict


#: Experiment 2 counts as reproduced ("synthetic CT is usable for segmentation") when the mean
#: Dice on CycleGAN + GC synthetic CT is within this of the mean Dice on real CT.
USABLE_DICE_GAP = 0.10


def _seed_spread(row) -> str:
    """What the seeds say about a comparison of replicated runs, for a findings line ("" for one seed)."""
    k = getattr(row, "n_replicates", 1)
    if not (k > 1 and np.isfinite(row.seed_sd_difference)):
        return ""
    return (
        f"; over {k:g} seeds: between-seed sd of the difference {row.seed_sd_difference:.1f} HU, "
        f"two-level 95 % interval [{row.seed_ci_low:+.1f}, {row.seed_ci_high:+.1f}]"
    )


def _comparison_line(head: str, row, unit: str, verdict: str) -> str:
    """One finding: ``head`` (Markdown), the two means, the difference with its CI and test, the seeds."""
    return (
        f"- {head}: {row.mean_a:.1f} vs {row.mean_b:.1f} {unit}, difference {row.mean_difference:+.1f} {unit} "
        f"[{row.ci_low:+.1f}, {row.ci_high:+.1f}], Wilcoxon p = {row.wilcoxon_p:.3g} (n = {row.n_pairs})"
        f"{_seed_spread(row)}: {verdict}."
    )


def _baseline_ratios(synthesis: pd.DataFrame, sizes: Sequence[float]) -> tuple[list[str], dict[str, pd.Series]]:
    """Each model's MAE relative to the constant baseline on the same subjects, per size."""
    base = synthesis[synthesis["model"] == "baseline_constant"].set_index(["size", "fold", "subject"])["mae"]
    lines = [
        "MAE relative to the constant baseline on the same subjects (below 1: better than predicting one "
        "mean HU everywhere; mean over subjects, folds and seeds):",
        "",
        "| model | " + " | ".join(f"size {s:g}" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    ratios = {}
    for model in (*MODELS, "baseline_histmatch", "reference_resampled"):
        rows = synthesis[synthesis["model"] == model]
        if rows.empty:
            continue
        rows = rows.set_index(["size", "fold", "subject"])["mae"]
        ratios[model] = (rows / base.reindex(rows.index)).groupby(level="size").mean()
        lines.append(f"| {model} | " + " | ".join(f"{ratios[model].get(s, float('nan')):.2f}" for s in sizes) + " |")
    return lines + [""], ratios


def _data_size_finding(synthesis: pd.DataFrame, sizes: Sequence[float], seed: int) -> tuple[list[str], list[str]]:
    """Finding 1: the largest against the smallest training size, per arm, paired on fold and subject."""
    from mr2ct.evaluation.statistics import paired_comparison, pairing_keys

    if len(sizes) < 2:
        return [], []
    smallest, largest = sizes[0], sizes[-1]
    frame = synthesis[synthesis["model"].isin(ARMS) & synthesis["size"].isin([smallest, largest])]
    by_size = paired_comparison(
        frame, "mae", a=largest, b=smallest, by=("model",), pair_on=pairing_keys(frame), model_column="size", seed=seed
    )
    lines, verdicts = [], []
    for row in by_size.itertuples():
        verdict = _verdict(row)
        verdicts.append(f"{row.model}: {verdict}")
        head = f"**More training data → lower MAE** ({row.model}): size {largest:g} vs {smallest:g}"
        lines.append(_comparison_line(head, row, "HU", verdict))
    return lines, verdicts


def _gc_findings(statistics: pd.DataFrame) -> tuple[list[str], dict[str, list[str]]]:
    """Finding 2: GC against no GC on MAE and boundary MAE, per size (rows of the statistics table)."""
    lines, verdicts = [], {"gc": [], "boundary": []}
    for metric, key, label in (("mae", "gc", "MAE"), ("mae_boundary", "boundary", "boundary MAE")):
        rows = statistics[(statistics["experiment"] == "synthesis") & (statistics["metric"] == metric)]
        for row in rows.itertuples():
            if not row.n_pairs > 0:
                lines.append(f"- **GC → lower {label}** (size {row.size:g}): not computable (no pairs).")
                continue
            verdict = _with_gc(_verdict(row))
            verdicts[key].append(f"size {row.size:g}: {verdict}")
            lines.append(_comparison_line(f"**GC → lower {label}** (size {row.size:g})", row, "HU", verdict))
    return lines, verdicts


def _segmentation_finding(segmentation: pd.DataFrame | None, largest: float) -> tuple[list[str], tuple | None]:
    """Finding 3: mean Dice on real CT and on each model's synthetic CT at the largest size."""
    if segmentation is None or segmentation.empty:
        return [], None
    bone = segmentation["structure"].str.lower().str.startswith(BONE_PREFIXES)
    real = segmentation[segmentation["source"] == "real_ct"]
    synthetic = segmentation[(segmentation["source"] == "synthetic_ct") & (segmentation["size"] == largest)]
    parts = [f"real CT {real['dice'].mean():.2f} (bone {real.loc[bone, 'dice'].mean():.2f})"]
    for model in MODELS:
        rows = synthetic[synthetic["model"] == model]
        if not rows.empty:
            parts.append(f"{model} {rows['dice'].mean():.2f} (bone {rows.loc[bone, 'dice'].mean():.2f})")
    line = (
        f"- **Synthetic CT for segmentation** (size {largest:g}, mean Dice over structures, folds, seeds and "
        "subjects): " + "; ".join(parts) + "."
    )
    gc_rows = synthetic[synthetic["model"] == ARMS[1]]
    usable = (float(real["dice"].mean()), float(gc_rows["dice"].mean())) if not gc_rows.empty else None
    return [line], usable


def _reproduced(found: list[str], word: str) -> str:
    hits = sum(word in f for f in found)
    return "reproduced" if found and hits == len(found) else ("partly reproduced" if hits else "not reproduced")


def findings(
    synthesis: pd.DataFrame, statistics: pd.DataFrame, segmentation: pd.DataFrame | None, seed: int = 0
) -> list[str]:
    """The paper's three findings checked against this run's tables, as Markdown lines.

    1. more training data → lower MAE (largest vs smallest size, paired on fold and
       subject, per arm); 2. GC → lower MAE and boundary MAE (per size, from the statistics
       table); 3. synthetic CT usable for segmentation (mean Dice on CycleGAN + GC synthetic
       CT within :data:`USABLE_DICE_GAP` of real CT at the largest size). A difference counts
       only as :func:`_verdict` says (subjects and, for replicated runs, seeds). First every
       model's MAE relative to the constant baseline on the same subjects, which says whether
       it learnt anything; last a verdict per finding.
    """
    gc_arm, plain_arm = ARMS[1], ARMS[0]
    sizes = sorted(synthesis["size"].dropna().unique())
    largest = sizes[-1]
    lines = ["### The paper's findings on this run (computed from the tables above)", ""]
    ratio_lines, ratios = _baseline_ratios(synthesis, sizes)
    data_lines, data_verdicts = _data_size_finding(synthesis, sizes, seed)
    gc_lines, gc_verdicts = _gc_findings(statistics)
    seg_lines, usable = _segmentation_finding(segmentation, largest)
    lines += ratio_lines + data_lines + gc_lines + seg_lines
    seeds = int(synthesis["replicate"].nunique()) if "replicate" in synthesis else 1
    rule = (
        f"a difference counts when its bootstrap CI over subjects, its Wilcoxon test and its interval over the "
        f"{seeds} seeds agree"
        if seeds > 1
        else "a difference counts when its bootstrap CI and Wilcoxon test agree; one seed per run, so the spread "
        "between trainings is not measured"
    )
    lines += ["", f"**Verdict per finding** ({rule}):", ""]
    gc_data = [v for v in data_verdicts if v.startswith(f"{gc_arm}:")]
    if data_verdicts:
        lines.append(
            f"1. *More training data improves accuracy*: {_reproduced(gc_data, 'lower')} for CycleGAN + GC "
            f"({'; '.join(data_verdicts)})."
        )
    lines.append(
        f"2. *GC improves accuracy, especially at boundaries*: MAE {_reproduced(gc_verdicts['gc'], 'lower with GC')} "
        f"({'; '.join(gc_verdicts['gc'])}); boundary MAE {_reproduced(gc_verdicts['boundary'], 'lower with GC')} "
        f"({'; '.join(gc_verdicts['boundary'])})."
    )
    if usable is not None:
        real_dice, gc_dice = usable
        word = "reproduced" if real_dice - gc_dice <= USABLE_DICE_GAP else "not reproduced"
        lines.append(
            f"3. *Synthetic CT is usable for segmentation* (criterion: mean Dice on CycleGAN + GC synthetic CT "
            f"within {USABLE_DICE_GAP:.2f} of real CT): {word} ({gc_dice:.2f} vs {real_dice:.2f})."
        )
    else:
        lines.append("3. *Synthetic CT is usable for segmentation*: not run (the cohort has no label maps).")
    if gc_arm in ratios:
        lines += [
            "",
            f"CycleGAN + GC at size {largest:g}: {ratios[gc_arm].get(largest, float('nan')):.2f}× the constant "
            f"baseline's MAE (quality bar 0.75×, long-run goal 0.6×); plain CycleGAN "
            f"{ratios.get(plain_arm, pd.Series(dtype=float)).get(largest, float('nan')):.2f}×.",
        ]
    return lines + [""]


def readme_results(
    summary_md: str | os.PathLike, statistics_csv: str | os.PathLike, findings_md: str | os.PathLike | None = None
) -> str:
    """The README's results block: the summary tables, the GC-vs-no-GC tests and the paper's findings,
    all as the statistics job wrote them (nothing is recomputed, so the README and the report agree)."""
    stats = pd.read_csv(statistics_csv)
    replicated = "seed_ci_low" in stats and np.isfinite(stats["seed_ci_low"]).any()
    lines = [
        Path(summary_md).read_text().strip(),
        "",
        f"### CycleGAN + GC against CycleGAN (paired by fold, subject{' and seed' if replicated else ''})",
        "",
        "| metric | size | mean GC | mean no GC | mean difference [95 % CI] | Wilcoxon p |"
        + (" between-seed sd | interval over seeds |" if replicated else "")
        + " better |",
        "|---|---|---|---|---|---|" + ("---|---|" if replicated else "") + "---|",
    ]
    for row in stats[stats["experiment"] == "synthesis"].itertuples():
        seeds = (
            f" {row.seed_sd_difference:.3g} | [{row.seed_ci_low:+.3g}, {row.seed_ci_high:+.3g}] |" if replicated else ""
        )
        lines.append(
            f"| {row.metric} | {row.size:g} | {row.mean_a:.3g} | {row.mean_b:.3g} | {row.mean_difference:+.3g} "
            f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}] | {row.wilcoxon_p:.3g} |{seeds} {row.better} |"
        )
    if findings_md is not None and Path(findings_md).exists():
        lines += ["", Path(findings_md).read_text().strip(), ""]
    return "\n".join(lines) + "\n"


def update_readme(readme: str | os.PathLike, block: str) -> Path:
    """Replace the text between the README's results markers with ``block``."""
    readme = Path(readme)
    text = readme.read_text()
    start, end = README_MARKERS
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"{readme}: no {start} … {end} markers")
    return atomic_write_text(readme, pattern.sub(lambda _: f"{start}\n{block}{end}", text))
