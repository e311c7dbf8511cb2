"""Snakemake adapter: score the baselines and the resampling reference of one size and fold."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation import reference_metrics_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: reference_metrics_job(sm.config, int(sm.wildcards.size), int(sm.wildcards.fold), sm.output[0]))
