"""Snakemake adapter: Dice, ASSD and HD95 per structure of one folder of predicted labels."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation.scoring import segmentation_metrics_job, subject_inputs
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
i, w = sm.input, sm.wildcards
subjects = subject_inputs(sm.params.subjects, labels=i.reference)
size = int(w.size) if "size" in w.keys() else None
model = w.get("model", "real_ct")
replicate = int(w.get("replicate", 0))  # the real CT is segmented once per fold
run(
    sm,
    lambda: segmentation_metrics_job(
        subjects, i.label_table, i.predicted, sm.output[0], int(w.fold), size, model, replicate
    ),
)
