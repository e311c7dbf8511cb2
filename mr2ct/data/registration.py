"""Registration of a subject's MR to its CT (config key ``data.registration``), with SimpleITK.

The paper measured synthesis against the CT after registering each MR to it.
Here the MR (moving) is aligned to the CT (fixed) by maximising Mattes mutual
information (Mattes et al. 2003), the usual metric for images of two
modalities, in three resolution levels (shrink 4, 2, 1; smoothing 2, 1, 0 mm),
with a gradient-descent optimiser whose parameter scales come from physical
shifts. The transform starts from the centres of mass of the two bodies
(thresholded CT and MR, so the background and the fields of view do not pull
it), then ``rigid`` optimises a rotation and a translation (6 parameters) and
``affine`` goes on from that rigid result to a full affine (12). The metric
samples a fixed share of the voxels at random from a fixed seed, and ITK runs
on one thread, so the same inputs give the same transform, bit for bit.

The MR is then resampled onto the CT's grid (linear interpolation, 0 outside
its field of view) and everything downstream reads that registered MR.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from mr2ct.data.io import InputError, read_volume, write_volume

__all__ = ["METHODS", "register_mr_to_ct", "register_subject", "registration_table"]

METHODS = ("rigid", "affine")
#: Mattes mutual information: histogram bins and the share of voxels it samples per iteration
HISTOGRAM_BINS = 32
SAMPLING_SHARE = (0.5, 0.3, 0.05)  # per resolution level, coarse to fine
SHRINK_FACTORS = (4, 2, 1)
SMOOTHING_MM = (2.0, 1.0, 0.0)
ITERATIONS = 200
#: regular-step gradient descent: first and smallest step (mm of the largest voxel shift, by the physical scales)
STEP_MM = 4.0
MIN_STEP_MM = 0.001
#: HU above which a CT voxel is body (the body's centre of mass starts the transform)
CT_BODY_HU = -500.0


def _sitk():
    import SimpleITK as sitk

    return sitk


def _body_image(image, threshold: float | None):
    """A 0/1 float image of the body: above ``threshold`` or, for MR, above Otsu's threshold."""
    sitk = _sitk()
    body = image > threshold if threshold is not None else sitk.OtsuThreshold(image, 0, 1)
    return sitk.Cast(body, sitk.sitkFloat32)


def _method(fixed, moving, transform, seed: int):
    sitk = _sitk()
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=HISTOGRAM_BINS)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentagePerLevel(list(SAMPLING_SHARE), seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=STEP_MM,
        minStep=MIN_STEP_MM,
        numberOfIterations=ITERATIONS,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    reg.SetSmoothingSigmasPerLevel(list(SMOOTHING_MM))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(transform, inPlace=False)
    reg.SetNumberOfThreads(1)
    final = reg.Execute(fixed, moving)
    return final, reg


def register_mr_to_ct(fixed, moving, method: str = "rigid", seed: int = 0):
    """Align the SimpleITK image ``moving`` (MR) to ``fixed`` (CT); return the transform (physical
    points of the CT to those of the MR, as ITK resamples) and a summary of the optimisation."""
    sitk = _sitk()
    if method not in METHODS:
        raise InputError(f"config key 'data.registration': '{method}' is not one of none, {', '.join(METHODS)}")
    # one thread: ITK's metrics split their sums over its thread pool in an order that varies between runs
    # (two threads gave transforms differing in the 7th digit from one run to the next, one thread never)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    fixed = sitk.Cast(fixed, sitk.sitkFloat32)
    moving = sitk.Cast(moving, sitk.sitkFloat32)
    start = time.perf_counter()
    initial = sitk.CenteredTransformInitializer(
        _body_image(fixed, CT_BODY_HU),
        _body_image(moving, None),
        sitk.Euler3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS,
    )
    rigid, reg = _method(fixed, moving, initial, seed)
    rigid = sitk.CompositeTransform(rigid).GetNthTransform(0) if rigid.GetName() == "CompositeTransform" else rigid
    transform, levels = rigid, [reg]
    if method == "affine":
        affine = sitk.AffineTransform(3)
        euler = sitk.Euler3DTransform(rigid)
        affine.SetMatrix(euler.GetMatrix())
        affine.SetTranslation(euler.GetTranslation())
        affine.SetCenter(euler.GetCenter())
        transform, reg = _method(fixed, moving, affine, seed)
        levels.append(reg)
    summary = {
        "method": method,
        "metric": round(float(reg.GetMetricValue()), 6),
        "iterations": int(sum(r.GetOptimizerIteration() for r in levels)),
        "stop": reg.GetOptimizerStopConditionDescription().split(": ")[-1][:120],
        "seconds": round(time.perf_counter() - start, 2),
    }
    return transform, summary


def register_subject(
    mr: str | os.PathLike,
    ct: str | os.PathLike,
    method: str,
    out_mr: str | os.PathLike,
    out_transform: str | os.PathLike,
    out_row: str | os.PathLike,
    subject: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Register one subject's MR to its CT: write the MR resampled onto the CT's grid, the transform
    (ITK ``.tfm``) and a one-row TSV of the final metric and the optimisation (all atomically)."""
    import pandas as pd

    from mr2ct.data.io import atomic_path, atomic_write_text

    sitk = _sitk()
    mr_volume = read_volume(mr)  # read once, with the package's checks (NaN, units, geometry)
    ct_volume = read_volume(ct)
    fixed, moving = to_sitk(ct_volume), to_sitk(mr_volume)
    transform, summary = register_mr_to_ct(fixed, moving, method, seed)
    resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    data = np.ascontiguousarray(sitk.GetArrayFromImage(resampled).transpose(2, 1, 0))  # the CT's canonical grid
    write_volume(out_mr, ct_volume.with_data(data), np.float32)
    with atomic_path(out_transform) as tmp:  # the temporary name keeps .tfm, from which ITK takes the format
        sitk.WriteTransform(transform, str(tmp))
    row = {"subject": subject, **summary, "mr_spacing_mm": ",".join(f"{v:.4g}" for v in mr_volume.spacing)}
    atomic_write_text(out_row, pd.DataFrame([row]).to_csv(sep="\t", index=False))
    return row


def registration_table(rows: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """The one-row tables of every subject's registration as one CSV (sorted by subject)."""
    import pandas as pd

    from mr2ct.data.io import atomic_write_text

    table = pd.concat([pd.read_csv(p, sep="\t", dtype={"subject": str}) for p in rows], ignore_index=True)
    return atomic_write_text(out, table.sort_values("subject").to_csv(index=False, lineterminator="\n"))


def to_sitk(volume):
    """A :class:`Volume` (canonical RAS+) as a SimpleITK image (LPS geometry, array order z, y, x)."""
    sitk = _sitk()
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.data.transpose(2, 1, 0), dtype=np.float32))
    flip = np.diag([-1.0, -1.0, 1.0])
    image.SetSpacing(volume.spacing)
    image.SetOrigin(tuple(float(v) for v in flip @ np.asarray(volume.origin)))
    image.SetDirection(tuple(float(v) for v in (flip @ volume.direction).ravel()))
    return image
