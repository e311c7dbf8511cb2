"""Snakemake adapter: segment a fold's test subjects (real CT, or one run's synthetic CT)."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation import segment_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
synthetic = sm.input.get("synthetic")
run(sm, lambda: segment_job(sm.config, int(sm.wildcards.fold), sm.input.model, sm.output[0], synthetic))
