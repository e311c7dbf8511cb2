"""Snakemake adapter: score one run's synthetic CT against the real CT."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation import synthesis_metrics_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
w = sm.wildcards
run(sm, lambda: synthesis_metrics_job(sm.config, int(w.size), w.model, int(w.fold), sm.input.synthetic, sm.output[0]))
