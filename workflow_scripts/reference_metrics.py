"""Snakemake adapter: score the baselines and the resampling reference of one size and fold."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation.scoring import reference_metrics_job, subject_inputs
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
i, w, ids = sm.input, sm.wildcards, sm.params.subjects
test = subject_inputs(ids["test"], mr=i.test_mr, ct=i.ct, mask=i.mask, labels=i.get("labels"), cache=i.caches)
train_mr = subject_inputs(ids["mr"], mr=i.train_mr, mask=i.train_mr_mask, cache=i.train_mr_caches)
train_ct = subject_inputs(ids["ct"], ct=i.train_ct, mask=i.train_ct_mask)
run(
    sm,
    lambda: reference_metrics_job(
        test, train_mr, train_ct, i.get("label_table"), int(w.size), int(w.fold), sm.params.band_mm, sm.output[0]
    ),
)
