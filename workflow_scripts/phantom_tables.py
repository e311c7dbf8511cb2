"""Snakemake adapter: subjects.tsv and labels.tsv of the phantom cohort."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.phantom import write_tables
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
run(sm, lambda: write_tables(Path(sm.output.subjects).parent, sm.params.seed, sm.params.n_subjects))
