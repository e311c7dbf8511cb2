"""Snakemake adapter: figure 4, the qualitative panel on the hip-joint slice."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.evaluation.scoring import SubjectInputs
from mr2ct.report.figures import qualitative_job
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
i = sm.input
files = SubjectInputs(
    sm.params.subject,
    ct=Path(i.ct),
    mask=Path(i.mask),
    mr=Path(i.mr),
    labels=Path(i.labels) if i.get("labels") else None,
)
dirs = dict(zip(sm.params.models, i.synthetic))
run(sm, lambda: qualitative_job(files, i.get("label_table"), dirs, Path(sm.output.png).with_suffix("")))
