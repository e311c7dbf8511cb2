"""Snakemake adapter: segment a fold's test subjects (their real CT, or one run's synthetic CT)."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation.scoring import subject_inputs
from mr2ct.segmentation.segmenter import segment_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
i = sm.input
subjects = subject_inputs(sm.params.subjects, ct=i.get("ct"), cache=i.caches)
run(sm, lambda: segment_job(subjects, i.model, sm.output[0], i.get("synthetic")))
