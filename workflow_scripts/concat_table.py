"""Snakemake adapter: concatenate per-job CSV parts into one sorted table."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation.scoring import concat_parts
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: concat_parts(list(sm.input), sm.output[0], sm.params.kind))
