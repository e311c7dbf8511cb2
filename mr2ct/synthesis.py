"""Synthetic CT: a trained MR→CT generator applied to held-out subjects, back on their own grid.

For each test subject the cached MR slices (:mod:`mr2ct.preprocess`) go through
G_CT in ``torch.inference_mode`` in batches; the output is mapped back to HU
(inverse of the CT normalisation), resampled from the training grid onto the
subject's original voxel grid, and written as ``int16`` NIfTI with the CT's
affine and on-disk orientation. Outside the training field of view the value
is air (−1024 HU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .io import Volume, write_volume
from .preprocess import PreprocessedSubject, load_preprocessed
from .training import load_generator, predict_ct

__all__ = ["synthesize_run", "synthetic_volume"]

log = logging.getLogger("mr2ct.synthesis")


def synthetic_volume(subject: PreprocessedSubject, fake_ct_normalised: np.ndarray) -> Volume:
    """Predicted normalised CT slices ``(Z, H, W)`` → a HU volume on the subject's CT grid."""
    hu_slices = subject.ct_hu(fake_ct_normalised)
    data = subject.grid.to_volume(hu_slices, subject.shape[:2], order=1, cval=float(subject.ct_hu_points[0]))
    return Volume(data, subject.affine, subject.disk_axcodes)


def synthesize_run(
    generator_path: str | os.PathLike,
    caches: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    batch_size: int = 16,
    device: str = "auto",
) -> list[Path]:
    """Write ``<out_dir>/<subject>.nii.gz`` for every cache file (named ``<subject>.npz``)."""
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    generator = load_generator(generator_path, device=str(dev))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cache in caches:
        subject_id = Path(cache).stem
        subject = load_preprocessed(cache)
        fake = predict_ct(generator, subject.mr, batch_size=batch_size, device=dev)
        written.append(write_volume(out_dir / f"{subject_id}.nii.gz", synthetic_volume(subject, fake), np.int16))
        log.info("synthesised %s (%d slices)", subject_id, fake.shape[0])
    return written
