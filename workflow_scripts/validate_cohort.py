"""Snakemake adapter: read and check every input volume before any long job."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.validation import write_validation_report
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
p = sm.params
run(sm, lambda: write_validation_report(p.subjects, p.labels_table, sm.output[0], p.tolerance_mm, p.checks))
