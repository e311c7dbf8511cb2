"""Snakemake adapter: which code and config made the results (for the report)."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.report.findings import provenance_summary_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: provenance_summary_job(".", sm.output[0]))
