"""Snakemake adapter: paired statistics and summary tables."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.report.findings import statistics_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
segmentation = sm.input.segmentation[0] if sm.input.segmentation else None
o = sm.output
run(
    sm,
    lambda: statistics_job(
        sm.input.synthesis, segmentation, o.statistics, o.summary, o.markdown, o.findings, o.verdict, sm.params.seed
    ),
)
