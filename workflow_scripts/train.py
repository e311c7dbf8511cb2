"""Snakemake adapter: train one (size, model, fold) run."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.models.training import TrainSettings, train_run
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
settings = TrainSettings(**sm.params.settings)
out_dir = Path(sm.output.generator).parent
run(
    sm,
    lambda: train_run(
        settings, sm.input.mr, sm.input.ct, sm.input.validation, out_dir, bone_labels=sm.params.bone_labels
    ),
)
