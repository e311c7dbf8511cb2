"""Snakemake adapter: one subject's volumes -> the training cache."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.cohort import SubjectFiles
from mr2ct.data.preprocess import PreprocessSettings, preprocess_to_cache
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
files = SubjectFiles(sm.wildcards.subject, sm.input.mr, sm.input.ct, sm.input.mask, sm.input.get("labels"))
settings = PreprocessSettings.from_config({"preprocess": sm.params.preprocess})
run(sm, lambda: preprocess_to_cache(files, settings, sm.output[0]))
