"""Snakemake adapter: a subject's CT -> its body mask (for cohorts that give none)."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.body_mask import write_body_mask
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: write_body_mask(sm.input.ct, sm.output[0]))
