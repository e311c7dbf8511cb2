"""Snakemake adapter: every table-based figure of the paper (PNG and PDF)."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.report.findings import figures_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
segmentation = sm.input.segmentation[0] if sm.input.segmentation else None
out_dir = Path(sm.output.mae).parent
run(
    sm,
    lambda: figures_job(
        sm.input.synthesis, segmentation, list(sm.input.losses), sm.params.runs, out_dir, sm.params.seed
    ),
)
