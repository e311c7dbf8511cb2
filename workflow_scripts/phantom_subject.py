"""Snakemake adapter: generate one phantom subject."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.phantom import PhantomSettings, write_subject
from mr2ct.workflow import run

p = snakemake.params  # noqa: F821  (provided by Snakemake)
settings = PhantomSettings(matrix=tuple(p.matrix), spacing=tuple(p.spacing))
out_dir = Path(snakemake.output.mr).parent.parent  # noqa: F821
run(snakemake, lambda: write_subject(out_dir, p.seed, p.index, settings))  # noqa: F821
