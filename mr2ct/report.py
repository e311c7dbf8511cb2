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

__all__ = ["README_MARKERS", "figures_job", "readme_results", "statistics_job", "update_readme"]

README_MARKERS = ("<!-- results:start -->", "<!-- results:end -->")
SYNTHESIS_METRICS = ("mae", "psnr", "ssim", "mae_boundary")
SEGMENTATION_METRICS = ("dice", "assd_mm", "hd95_mm")


def statistics_job(synthesis_csv, segmentation_csv, out_statistics, out_summary, out_markdown, seed: int) -> list[Path]:
    """Paired GC-vs-no-GC statistics and mean ± sd summaries (CSV and Markdown)."""
    from .statistics import segmentation_statistics, statistics_table, summary_table, to_markdown

    synthesis = pd.read_csv(synthesis_csv)
    parts = [statistics_table(synthesis, SYNTHESIS_METRICS, seed=seed).assign(experiment="synthesis")]
    summaries = [summary_table(synthesis, SYNTHESIS_METRICS, by=("size", "model")).assign(experiment="synthesis")]
    markdown = ["### Synthesis accuracy (mean ± sd over folds and test subjects)", "",
                to_markdown(summary_table(synthesis, SYNTHESIS_METRICS, by=("size", "model")))]
    if segmentation_csv:
        segmentation = pd.read_csv(segmentation_csv)
        parts.append(segmentation_statistics(segmentation, seed=seed).assign(experiment="segmentation"))
        seg_summary = summary_table(_with_source_model(segmentation), SEGMENTATION_METRICS, by=("size", "model"))
        summaries.append(seg_summary.assign(experiment="segmentation"))
        markdown += ["", "### Segmentation of real and synthetic CT (mean ± sd over structures, folds and subjects)", "",
                     to_markdown(seg_summary)]
    written = [write_table(pd.concat(parts, ignore_index=True), out_statistics),
               write_table(pd.concat(summaries, ignore_index=True), out_summary)]
    written.append(atomic_write_text(out_markdown, "\n".join(markdown) + "\n"))
    return written


def _with_source_model(segmentation: pd.DataFrame) -> pd.DataFrame:
    """Real-CT rows repeated for every size, so each size's summary has its real-CT reference."""
    real = segmentation[segmentation["source"] == "real_ct"]
    synthetic = segmentation[segmentation["source"] != "real_ct"]
    sizes = sorted(synthetic["size"].dropna().unique())
    repeated = [real.assign(size=size) for size in sizes] or [real]
    return pd.concat([synthetic, *repeated], ignore_index=True)


def figures_job(synthesis_csv, segmentation_csv, loss_paths: Sequence[str | os.PathLike], out_dir, seed: int) -> list[Path]:
    """Figures 1–3 and 5–7 (PNG and PDF) from the tables and the runs' loss tables."""
    from .figures import FIGURE_STEMS, plot_metric_vs_size, read_loss_tables, render_all

    synthesis = pd.read_csv(synthesis_csv)
    segmentation = pd.read_csv(segmentation_csv) if segmentation_csv else None
    written = render_all(synthesis, segmentation, read_loss_tables(loss_paths), out_dir, seed=seed)
    return written + plot_metric_vs_size(synthesis, "ssim", Path(out_dir) / FIGURE_STEMS["ssim"], seed=seed)


def readme_results(summary_md: str | os.PathLike, statistics_csv: str | os.PathLike) -> str:
    """The README's results block: the summary tables and the GC-vs-no-GC tests, from the tables."""
    stats = pd.read_csv(statistics_csv)
    lines = [Path(summary_md).read_text().strip(), "", "### CycleGAN + GC against CycleGAN (paired by fold and subject)", "",
             "| metric | size | mean GC | mean no GC | mean difference [95 % CI] | Wilcoxon p | better |",
             "|---|---|---|---|---|---|---|"]
    synthesis = stats[stats["experiment"] == "synthesis"]
    for row in synthesis.itertuples():
        lines.append(
            f"| {row.metric} | {row.size:g} | {row.mean_a:.3g} | {row.mean_b:.3g} | {row.mean_difference:+.3g} "
            f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}] | {row.wilcoxon_p:.3g} | {row.better} |"
        )
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
