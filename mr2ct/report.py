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

import pandas as pd

from .evaluation import write_table
from .io import atomic_write_text

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


def statistics_job(synthesis_csv, segmentation_csv, out_statistics, out_summary, out_markdown, seed: int) -> list[Path]:
    """Paired GC-vs-no-GC statistics and mean ± sd summaries (CSV and Markdown)."""
    from .statistics import segmentation_statistics, statistics_table, summary_table, to_markdown

    synthesis = pd.read_csv(synthesis_csv)
    parts = [statistics_table(synthesis, SYNTHESIS_METRICS, seed=seed).assign(experiment="synthesis")]
    summaries = [summary_table(synthesis, SYNTHESIS_METRICS, by=("size", "model")).assign(experiment="synthesis")]
    markdown = [
        "### Synthesis accuracy (mean ± sd over folds and test subjects)",
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
            "### Segmentation of real and synthetic CT (mean ± sd over structures, folds and subjects)",
            "",
            to_markdown(seg_summary),
            SURFACE_DISTANCE_NOTE,
        ]
    written = [
        write_table(pd.concat(parts, ignore_index=True), out_statistics),
        write_table(pd.concat(summaries, ignore_index=True), out_summary),
    ]
    written.append(atomic_write_text(out_markdown, "\n".join(markdown) + "\n"))
    return written


def _with_source_model(segmentation: pd.DataFrame) -> pd.DataFrame:
    """Real-CT rows repeated for every size, so each size's summary has its real-CT reference."""
    real = segmentation[segmentation["source"] == "real_ct"]
    synthetic = segmentation[segmentation["source"] != "real_ct"]
    sizes = sorted(synthetic["size"].dropna().unique())
    repeated = [real.assign(size=size) for size in sizes] or [real]
    return pd.concat([synthetic, *repeated], ignore_index=True)


def figures_job(
    synthesis_csv, segmentation_csv, loss_paths: Sequence[str | os.PathLike], out_dir, seed: int
) -> list[Path]:
    """Figures 1–3 and 5–7 (PNG and PDF) from the tables and the runs' loss tables."""
    from .figures import FIGURE_STEMS, plot_metric_vs_size, read_loss_tables, render_all

    synthesis = pd.read_csv(synthesis_csv)
    segmentation = pd.read_csv(segmentation_csv) if segmentation_csv else None
    written = render_all(synthesis, segmentation, read_loss_tables(loss_paths), out_dir, seed=seed)
    return written + plot_metric_vs_size(synthesis, "ssim", Path(out_dir) / FIGURE_STEMS["ssim"], seed=seed)


def provenance_summary_job(workdir: str | os.PathLike, out_csv: str | os.PathLike) -> Path:
    """``provenance_summary.csv``: the code versions and configs behind the run's records."""
    from .provenance import code_summary

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


def findings(
    synthesis: pd.DataFrame, statistics: pd.DataFrame, segmentation: pd.DataFrame | None, seed: int = 0
) -> list[str]:
    """The paper's three findings checked against this run's tables, as Markdown lines.

    1. more training data → lower MAE (largest vs smallest size, paired on fold and
       subject, per model); 2. GC → lower boundary MAE (from the statistics table);
    3. synthetic CT usable for segmentation (mean Dice of bone and of all structures on
       synthetic vs real CT at the largest size). Also every model's MAE relative to the
       constant baseline on the same subjects, which says whether it learnt anything.
    """
    from .statistics import paired_comparison

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
    for model in ("cyclegan", "cyclegan_gc", "reference_supervised", "baseline_histmatch", "reference_resampled"):
        rows = synthesis[synthesis["model"] == model].set_index(["size", "fold", "subject"])["mae"]
        if rows.empty:
            continue
        ratio = (rows / base.reindex(rows.index)).groupby(level="size").mean()
        lines.append(f"| {model} | " + " | ".join(f"{ratio.get(s, float('nan')):.2f}" for s in sizes) + " |")
    lines.append("")

    if len(sizes) > 1:
        frame = synthesis[
            synthesis["model"].isin(["cyclegan", "cyclegan_gc"]) & synthesis["size"].isin([sizes[0], largest])
        ]
        by_size = paired_comparison(frame, "mae", a=largest, b=sizes[0], by=("model",), model_column="size", seed=seed)
        for row in by_size.itertuples():
            lines.append(
                f"- **More training data → lower MAE** ({row.model}): size {largest:g} vs {sizes[0]:g}: "
                f"{row.mean_a:.1f} vs {row.mean_b:.1f} HU, difference {row.mean_difference:+.1f} HU "
                f"[{row.ci_low:+.1f}, {row.ci_high:+.1f}], Wilcoxon p = {row.wilcoxon_p:.3g} (n = {row.n_pairs}): "
                f"{_verdict(row.ci_low, row.ci_high, row.wilcoxon_p)}."
            )
    gc = statistics[(statistics["experiment"] == "synthesis") & (statistics["metric"] == "mae_boundary")]
    for row in gc.itertuples():
        if not row.n_pairs > 0:
            lines.append(
                f"- **GC → lower boundary MAE** (size {row.size:g}): not computable (no pairs with a boundary)."
            )
            continue
        lines.append(
            f"- **GC → lower boundary MAE** (size {row.size:g}): {row.mean_a:.1f} vs {row.mean_b:.1f} HU, "
            f"difference {row.mean_difference:+.1f} HU [{row.ci_low:+.1f}, {row.ci_high:+.1f}], "
            f"Wilcoxon p = {row.wilcoxon_p:.3g} (n = {row.n_pairs}): "
            f"{_with_gc(_verdict(row.ci_low, row.ci_high, row.wilcoxon_p))}."
        )
    if segmentation is not None and not segmentation.empty:
        bone = segmentation["structure"].isin(["pelvis", "femur_left", "femur_right"])
        real = segmentation[segmentation["source"] == "real_ct"]
        synthetic = segmentation[(segmentation["source"] == "synthetic_ct") & (segmentation["size"] == largest)]
        parts = [f"real CT {real['dice'].mean():.2f} (bone {real.loc[bone, 'dice'].mean():.2f})"]
        for model in ("cyclegan", "cyclegan_gc", "reference_supervised"):
            rows = synthetic[synthetic["model"] == model]
            if not rows.empty:
                parts.append(f"{model} {rows['dice'].mean():.2f} (bone {rows.loc[bone, 'dice'].mean():.2f})")
        lines.append(
            f"- **Synthetic CT for segmentation** (size {largest:g}, mean Dice over structures, folds and "
            f"subjects): " + "; ".join(parts) + "."
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
