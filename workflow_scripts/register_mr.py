"""Snakemake adapter: a subject's MR registered to its CT, with its transform, table row and QC picture."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.registration import register_subject
from mr2ct.report.plotting import registration_qc
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
i, o, p, subject = sm.input, sm.output, sm.params, sm.wildcards.subject


def job():
    register_subject(i.mr, i.ct, p.method, o.mr, o.transform, o.table, subject, p.seed)
    registration_qc(o.qc, i.ct, o.mr, subject, o.table)


run(sm, job)
