"""Synthetic CT: a trained MR→CT generator applied to MR slices, and back on the subject's own grid.

:func:`load_generator` rebuilds G_CT from its file (weights and the architecture they belong
to); :func:`predict_ct` applies it to normalised MR slices in ``torch.inference_mode`` in
batches (with the neighbouring slices as channels when the generator was trained in 2.5D);
:func:`synthesize_run` maps the output back to HU (inverse of the CT normalisation),
resamples it from the training grid onto each test subject's original voxel grid and writes
``int16`` NIfTI with the CT's affine and on-disk orientation. Outside the training field of
view the value is air (−1024 HU).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mr2ct.data.io import InputError, Volume, write_volume
from mr2ct.data.preprocess import PreprocessedSubject, context_stack, load_preprocessed
from mr2ct.models.devices import select_device
from mr2ct.models.networks import GeneratorSpec, ResnetGenerator
from mr2ct.models.resumable import load_checkpoint

__all__ = ["load_generator", "predict_ct", "synthesize_run", "synthetic_volume"]

log = logging.getLogger("mr2ct.models.synthesis")


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> ResnetGenerator:
    """The MR→CT generator of a finished run (``generator.pt``), in eval mode."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "state_dict" not in state:
        raise InputError(f"{path}: not an mr2ct generator file")
    if "spec" not in state:
        raise InputError(
            f"{path}: a generator file of an older mr2ct (no architecture stored with the weights); "
            "retrain it (snakemake --forcerun train)"
        )
    net = GeneratorSpec.from_dict(state["spec"]).build()
    try:
        net.load_state_dict(state["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(f"{path}: generator weights do not fit the stored architecture ({exc})") from None
    return net.to(device).eval()


@torch.inference_mode()
def predict_ct(
    generator: ResnetGenerator, mr_slices: np.ndarray, batch_size: int = 16, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Apply G_CT slice-wise to normalised MR slices ``(Z, H, W)``; returns normalised CT ``(Z, H, W)``.

    A generator with ``2k + 1`` input channels gets each slice with its ``k`` neighbours on
    either side (:func:`mr2ct.data.preprocess.context_stack`), as it was trained.
    """
    context = (generator.in_channels - 1) // 2
    mr_slices = np.asarray(mr_slices, dtype=np.float32)
    out = np.empty_like(mr_slices)
    for start in range(0, len(mr_slices), batch_size):
        index = np.arange(start, min(start + batch_size, len(mr_slices)))
        batch = torch.from_numpy(context_stack(mr_slices, context, index))
        out[index] = generator(batch.to(device)).float().squeeze(1).cpu().numpy()
    return out


def synthetic_volume(subject: PreprocessedSubject, fake_ct_normalised: np.ndarray) -> Volume:
    """Predicted normalised CT slices ``(Z, H, W)`` → a HU volume on the subject's CT grid."""
    return subject.ct_volume(fake_ct_normalised)


def synthesize_run(
    generator_path: str | os.PathLike,
    caches: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    batch_size: int = 16,
    device: str = "auto",
) -> list[Path]:
    """Write ``<out_dir>/<subject>.nii.gz`` for every cache file (named ``<subject>.npz``)."""
    dev = select_device(device)
    generator = load_generator(generator_path, device=dev)
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
