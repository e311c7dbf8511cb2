"""Snakemake adapter: every subject's registration row -> one table."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.registration import registration_table
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: registration_table(list(sm.input), sm.output[0]))
