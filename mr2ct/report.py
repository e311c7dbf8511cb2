"""The report stage: statistics and summary tables, every table-based figure, the README results.

Job functions called by ``rules/report.smk`` (and ``mr2ct readme-results``):
they read the aggregated tables under ``results/tables/`` and the per-run loss
tables, and write the statistics, summaries and figures.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluation import BONE_PREFIXES, write_table
from .io import atomic_write_text
from .settings import ARMS, MODELS

__all__ = [
    "README_MARKERS",
    "figures_job",
    "provenance_summary_job",
    "readme_results",
    "statistics_job",
    "update_readme",
]

README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
SYNTHESIS_METRICS = ("mae", "psnr", "ssim", "mae_boundary")
SEGMENTATION_METRICS = ("dice", "assd_mm", "hd95_mm")
SURFACE_DISTANCE_NOTE = (
    "(k/n): the mean is over the k of n structures × subjects where the distance exists; "
    "ASSD and HD95 do not exist for a structure that was not predicted at all (counted in "
    "*empty prediction*) or is absent from the reference."
)


def statistics_job(
    synthesis_csv, segmentation_csv, out_statistics, out_summary, out_markdown, out_verdict, seed: int
) -> list[Path]:
    """Paired GC-vs-no-GC statistics, mean ± sd summaries (CSV and Markdown) and the verdict on
    the paper's findings (reStructuredText-safe lines for the report's front page)."""
    from .statistics import segmentation_statistics, statistics_table, summary_table, to_markdown

    synthesis = pd.read_csv(synthesis_csv)
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
        segmentation = pd.read_csv(segmentation_csv)
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
        ]
    statistics = pd.concat(parts, ignore_index=True)
    written = [
        write_table(statistics, out_statistics),
        write_table(pd.concat(summaries, ignore_index=True), out_summary),
    ]
    written.append(atomic_write_text(out_markdown, "\n".join(markdown) + "\n"))
    lines = findings(synthesis, statistics, segmentation, seed=seed)
    written.append(atomic_write_text(out_verdict, "\n".join(verdict(lines)) + "\n"))
    return written


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
    from .figures import FIGURE_STEMS, plot_metric_vs_size, read_loss_tables, render_all

    synthesis = pd.read_csv(synthesis_csv)
    segmentation = pd.read_csv(segmentation_csv) if segmentation_csv else None
    written = render_all(synthesis, segmentation, read_loss_tables(loss_paths, runs), out_dir, seed=seed)
    return written + plot_metric_vs_size(synthesis, "ssim", Path(out_dir) / FIGURE_STEMS["ssim"], seed=seed)


def provenance_summary_job(workdir: str | os.PathLike, out_csv: str | os.PathLike) -> Path:
    """``provenance_summary.csv``: the code versions and configs behind the run's records."""
    from .audit import code_summary

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


def _verdict(low: float, high: float, p: float, alpha: float = 0.05) -> str:
    """Reading of a paired difference (new − old): its 95 % bootstrap CI and Wilcoxon p must agree."""
    direction = "lower" if high < 0 else "higher" if low > 0 else None
    if direction is None:
        return "no resolved difference"
    if not p < alpha:
        return f"no resolved difference (the bootstrap CI excludes zero, but Wilcoxon p ≥ {alpha:g})"
    return direction


def _with_gc(verdict: str) -> str:
    return f"{verdict} with GC" if verdict in ("lower", "higher") else verdict


#: Experiment 2 counts as reproduced ("synthetic CT is usable for segmentation") when the mean
#: Dice on CycleGAN + GC synthetic CT is within this of the mean Dice on real CT.
USABLE_DICE_GAP = 0.10


def _seed_spread(row) -> str:
    """ ", between-seed sd ±x HU over k seeds" for a comparison of replicated runs, else ""."""
    k = getattr(row, "n_replicates", 1)
    if not (k > 1 and np.isfinite(row.seed_sd_difference)):
        return ""
    return f", between-seed sd of the difference {row.seed_sd_difference:.1f} HU over {k:g} seeds"


def findings(
    synthesis: pd.DataFrame, statistics: pd.DataFrame, segmentation: pd.DataFrame | None, seed: int = 0
) -> list[str]:
    """The paper's three findings checked against this run's tables, as Markdown lines.

    1. more training data → lower MAE (largest vs smallest size, paired on fold and
       subject, per arm); 2. GC → lower MAE and boundary MAE (per size, from the statistics
       table); 3. synthetic CT usable for segmentation (mean Dice on CycleGAN + GC synthetic
       CT within :data:`USABLE_DICE_GAP` of real CT at the largest size). A difference counts
       only when its bootstrap CI and its Wilcoxon test agree. First every model's MAE relative
       to the constant baseline on the same subjects, which says whether it learnt anything;
       last a verdict per finding.
    """
    from .statistics import paired_comparison, pairing_keys

    gc_arm, plain_arm = ARMS[1], ARMS[0]
    lines = ["### The paper's findings on this run (computed from the tables above)", ""]
    sizes = sorted(synthesis["size"].dropna().unique())
    largest = sizes[-1]
    base = synthesis[synthesis["model"] == "baseline_constant"].set_index(["size", "fold", "subject"])["mae"]
    lines += [
        "MAE relative to the constant baseline on the same subjects (below 1: better than predicting one "
        "mean HU everywhere):",
        "",
        "| model | " + " | ".join(f"size {s:g}" for s in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    ratios = {}
    for model in (*MODELS, "baseline_histmatch", "reference_resampled"):
        rows = synthesis[synthesis["model"] == model].set_index(["size", "fold", "subject"])["mae"]
        if rows.empty:
            continue
        ratios[model] = (rows / base.reindex(rows.index)).groupby(level="size").mean()
        lines.append(f"| {model} | " + " | ".join(f"{ratios[model].get(s, float('nan')):.2f}" for s in sizes) + " |")
    lines.append("")

    verdicts: dict[str, list[str]] = {"data": [], "gc": [], "boundary": []}
    if len(sizes) > 1:
        frame = synthesis[synthesis["model"].isin(ARMS) & synthesis["size"].isin([sizes[0], largest])]
        by_size = paired_comparison(
            frame,
            "mae",
            a=largest,
            b=sizes[0],
            by=("model",),
            pair_on=pairing_keys(frame),
            model_column="size",
            seed=seed,
        )
        for row in by_size.itertuples():
            verdict = _verdict(row.ci_low, row.ci_high, row.wilcoxon_p)
            verdicts["data"].append(f"{row.model}: {verdict}")
            lines.append(
                f"- **More training data → lower MAE** ({row.model}): size {largest:g} vs {sizes[0]:g}: "
                f"{row.mean_a:.1f} vs {row.mean_b:.1f} HU, difference {row.mean_difference:+.1f} HU "
                f"[{row.ci_low:+.1f}, {row.ci_high:+.1f}], Wilcoxon p = {row.wilcoxon_p:.3g} (n = {row.n_pairs})"
                f"{_seed_spread(row)}: {verdict}."
            )
    for metric, key, label in (("mae", "gc", "MAE"), ("mae_boundary", "boundary", "boundary MAE")):
        rows = statistics[(statistics["experiment"] == "synthesis") & (statistics["metric"] == metric)]
        for row in rows.itertuples():
            if not row.n_pairs > 0:
                lines.append(f"- **GC → lower {label}** (size {row.size:g}): not computable (no pairs).")
                continue
            verdict = _with_gc(_verdict(row.ci_low, row.ci_high, row.wilcoxon_p))
            verdicts[key].append(f"size {row.size:g}: {verdict}")
            lines.append(
                f"- **GC → lower {label}** (size {row.size:g}): {row.mean_a:.1f} vs {row.mean_b:.1f} HU, "
                f"difference {row.mean_difference:+.1f} HU [{row.ci_low:+.1f}, {row.ci_high:+.1f}], "
                f"Wilcoxon p = {row.wilcoxon_p:.3g} (n = {row.n_pairs}){_seed_spread(row)}: {verdict}."
            )
    usable = None
    if segmentation is not None and not segmentation.empty:
        bone = segmentation["structure"].str.lower().str.startswith(BONE_PREFIXES)
        real = segmentation[segmentation["source"] == "real_ct"]
        synthetic = segmentation[(segmentation["source"] == "synthetic_ct") & (segmentation["size"] == largest)]
        parts = [f"real CT {real['dice'].mean():.2f} (bone {real.loc[bone, 'dice'].mean():.2f})"]
        for model in MODELS:
            rows = synthetic[synthetic["model"] == model]
            if not rows.empty:
                parts.append(f"{model} {rows['dice'].mean():.2f} (bone {rows.loc[bone, 'dice'].mean():.2f})")
        lines.append(
            f"- **Synthetic CT for segmentation** (size {largest:g}, mean Dice over structures, folds and "
            f"subjects): " + "; ".join(parts) + "."
        )
        gc_rows = synthetic[synthetic["model"] == gc_arm]
        if not gc_rows.empty:
            usable = (float(real["dice"].mean()), float(gc_rows["dice"].mean()))

    def reproduced(found: list[str], word: str) -> str:
        hits = sum(word in f for f in found)
        return "reproduced" if found and hits == len(found) else ("partly reproduced" if hits else "not reproduced")

    gc_data = [v for v in verdicts["data"] if v.startswith(f"{gc_arm}:")]
    lines += ["", "**Verdict per finding** (a difference counts when its bootstrap CI and Wilcoxon test agree):", ""]
    if verdicts["data"]:
        lines.append(
            f"1. *More training data improves accuracy*: {reproduced(gc_data, 'lower')} for CycleGAN + GC "
            f"({'; '.join(verdicts['data'])})."
        )
    lines.append(
        f"2. *GC improves accuracy, especially at boundaries*: MAE {reproduced(verdicts['gc'], 'lower with GC')} "
        f"({'; '.join(verdicts['gc'])}); boundary MAE {reproduced(verdicts['boundary'], 'lower with GC')} "
        f"({'; '.join(verdicts['boundary'])})."
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
        lines.append("")
        lines.append(
            f"CycleGAN + GC at size {largest:g}: {ratios[gc_arm].get(largest, float('nan')):.2f}× the constant "
            f"baseline's MAE (quality bar 0.85×, long-run goal 0.6×); plain CycleGAN "
            f"{ratios.get(plain_arm, pd.Series(dtype=float)).get(largest, float('nan')):.2f}×."
        )
    return lines + [""]


def readme_results(
    summary_md: str | os.PathLike,
    statistics_csv: str | os.PathLike,
    synthesis_csv: str | os.PathLike | None = None,
    segmentation_csv: str | os.PathLike | None = None,
) -> str:
    """The README's results block: the summary tables, the GC-vs-no-GC tests and, given the
    metric tables, the paper's findings checked against them — all from the tables."""
    stats = pd.read_csv(statistics_csv)
    lines = [
        Path(summary_md).read_text().strip(),
        "",
        "### CycleGAN + GC against CycleGAN (paired by fold and subject)",
        "",
        "| metric | size | mean GC | mean no GC | mean difference [95 % CI] | Wilcoxon p | better |",
        "|---|---|---|---|---|---|---|",
    ]
    synthesis = stats[stats["experiment"] == "synthesis"]
    for row in synthesis.itertuples():
        lines.append(
            f"| {row.metric} | {row.size:g} | {row.mean_a:.3g} | {row.mean_b:.3g} | {row.mean_difference:+.3g} "
            f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}] | {row.wilcoxon_p:.3g} | {row.better} |"
        )
    if synthesis_csv is not None:
        segmentation = pd.read_csv(segmentation_csv) if segmentation_csv and Path(segmentation_csv).exists() else None
        lines += [""] + findings(pd.read_csv(synthesis_csv), stats, segmentation)
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
