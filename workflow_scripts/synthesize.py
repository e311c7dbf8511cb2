"""Snakemake adapter: synthetic CT of a fold's test subjects with one trained generator."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.models.synthesis import synthesize_run
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: synthesize_run(sm.input.generator, sm.input.caches, sm.output[0]))
