"""Snakemake adapter: train the fold's CT segmentation network on real CT."""

from pathlib import Path

import _package  # noqa: F401  (the mr2ct package of this workflow folder)

from mr2ct.segmentation.segmenter import SegmentationSettings, train_segmentation
from mr2ct.workflow import run

sm = snakemake  # noqa: F821  (provided by Snakemake)
settings = SegmentationSettings(**sm.params.settings)
run(sm, lambda: train_segmentation(settings, sm.input.caches, sm.input.validation, Path(sm.output.model).parent))
