"""Snakemake adapter: write the folds and nested training sets as a readable table."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.splits import write_splits
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: write_splits(sm.params.subjects, sm.config, sm.output[0]))
