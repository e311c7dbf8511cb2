"""Snakemake adapter: score one run's synthetic CT against the real CT of its fold's test subjects."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation.scoring import subject_inputs, synthesis_metrics_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
i, w = sm.input, sm.wildcards
subjects = subject_inputs(sm.params.subjects, ct=i.ct, mask=i.mask, labels=i.get("labels"))
run(
    sm,
    lambda: synthesis_metrics_job(
        subjects,
        i.get("label_table"),
        i.synthetic,
        int(w.size),
        w.model,
        int(w.fold),
        sm.params.band_mm,
        sm.output[0],
        int(w.replicate),
    ),
)
