"""Snakemake adapter: write the folds and nested training sets as a readable table."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.splits import write_splits
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
p = sm.params
run(sm, lambda: write_splits(p.subjects, {"seed": p.seed, "splits": dict(p.splits)}, sm.output[0]))
