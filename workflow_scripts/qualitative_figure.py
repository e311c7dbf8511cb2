"""Snakemake adapter: figure 4, the qualitative panel on the hip-joint slice."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation import qualitative_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
dirs = dict(zip(sm.params.models, sm.input.synthetic))
run(sm, lambda: qualitative_job(sm.config, 0, dirs, Path(sm.output.png).with_suffix("")))
