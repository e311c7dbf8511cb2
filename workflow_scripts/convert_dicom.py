"""Snakemake adapter: one DICOM series -> the subject's NIfTI file of that role."""

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.data.dicom import convert_series
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
p = sm.params
run(sm, lambda: convert_series(p.folder, sm.output[0], p.uid or None, p.role))
