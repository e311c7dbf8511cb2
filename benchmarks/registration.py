"""Cost and accuracy of the cohort preparation: DICOM conversion, MR-to-CT registration, body masks.

Usage: python benchmarks/registration.py [--matrix X Y] [--spacing DX DY DZ] [--subjects N]

For each phantom subject (seed 42, the default grid unless given): the CT and MR are written
as DICOM series scanner-style (unsigned 16-bit with a rescale, shuffled names), converted back
(seconds per series, and whether the HU come back exactly), the MR is moved by a seeded random
rigid motion (rotations up to 10 degrees, translations up to 20 mm) onto another grid and
registered back (seconds, landmark error at the label centres: RMS and largest, mm), and the
body mask is derived from the CT (seconds, Dice against the drawn mask). Prints one JSON line
per subject and a summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mr2ct.data.body_mask import body_mask  # noqa: E402
from mr2ct.data.dicom import read_series  # noqa: E402
from mr2ct.data.phantom import PhantomSettings, render_subject, sample_subject  # noqa: E402
from mr2ct.data.registration import register_mr_to_ct, to_sitk  # noqa: E402
from tests.dicom_support import write_series  # noqa: E402

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_series(folder: Path, volume, modality: str) -> None:
    data = volume.data.astype(np.float64)  # float32 arithmetic would round some HU differently
    intercept = -1024.0 if modality == "CT" else 0.0
    stored = np.rint(data - intercept).clip(0, 65535).astype(np.uint16)
    write_series(folder, stored, LPS @ volume.affine, modality, intercept=intercept)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=int, nargs=2, default=[448, 320])
    parser.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 2.5])
    parser.add_argument("--subjects", type=int, default=3)
    args = parser.parse_args()
    settings = PhantomSettings(matrix=tuple(args.matrix), spacing=tuple(args.spacing))
    rng = np.random.default_rng(42)
    rows = []
    for index in range(args.subjects):
        vols = render_subject(sample_subject(42, index), settings, index)
        row: dict[str, object] = {"subject": index, "shape": list(vols["ct"].data.shape)}
        with tempfile.TemporaryDirectory() as tmp:
            _as_series(Path(tmp) / "ct", vols["ct"], "CT")
            start = time.perf_counter()
            ct_back = read_series(Path(tmp) / "ct")
            row["convert_s"] = round(time.perf_counter() - start, 2)
            row["hu_exact"] = bool(np.array_equal(ct_back.data, np.rint(vols["ct"].data).clip(-1024, 64511)))
        ct, mr = to_sitk(vols["ct"]), to_sitk(vols["mr"])
        labels = vols["labels"].data.astype(int)
        centres = ndimage.center_of_mass(labels > 0, labels, [i for i in np.unique(labels) if i > 0])
        points = [ct.TransformContinuousIndexToPhysicalPoint([float(v) for v in c]) for c in centres]
        degrees, shift = rng.uniform(-10, 10, 3), rng.uniform(-20, 20, 3)
        truth = sitk.Euler3DTransform(tuple(np.mean(points, axis=0)), *np.deg2rad(degrees), tuple(shift))
        grid = sitk.Image([int(s * 1.25) for s in ct.GetSize()], sitk.sitkFloat32)
        grid.SetSpacing(tuple(s * 0.9 for s in ct.GetSpacing()))
        grid.SetDirection(ct.GetDirection())
        grid.SetOrigin(tuple(np.asarray(ct.GetOrigin()) - np.asarray(ct.GetDirection()).reshape(3, 3) @ [40, 30, 25]))
        moved = sitk.Resample(mr, grid, truth.GetInverse(), sitk.sitkLinear, 0.0)
        found, summary = register_mr_to_ct(ct, moved, "rigid", seed=42)
        errors = [np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p))) for p in points]
        row.update(
            motion_deg=np.round(degrees, 1).tolist(),
            motion_mm=np.round(shift, 1).tolist(),
            register_s=summary["seconds"],
            rms_mm=round(float(np.sqrt(np.mean(np.square(errors)))), 3),
            max_mm=round(float(max(errors)), 3),
        )
        start = time.perf_counter()
        derived, drawn = body_mask(vols["ct"].data), vols["mask"].data > 0
        row["mask_s"] = round(time.perf_counter() - start, 2)
        row["mask_dice"] = round(float(2 * (derived & drawn).sum() / (derived.sum() + drawn.sum())), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = ("convert_s", "register_s", "rms_mm", "max_mm", "mask_s", "mask_dice")
    print(json.dumps({"summary": {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}}))


if __name__ == "__main__":
    main()
