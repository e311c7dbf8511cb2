"""Body masks derived from the CT, for cohorts that ship none.

SynthRAD2023 made its masks of the patient outline from the CT by thresholding,
keeping the largest connected component and filling holes (Thummerer et al.
2023, the SynthRAD2023 dataset paper); the same steps here: voxels above
validation's ``AIR_HU`` (-500 HU, halfway between air and fat), the largest
3D connected component (the couch and stray voxels drop out), holes filled in
every axial slice (gas in the bowel and the rectum belongs to the body), then
the largest component again. The mask is checked like a given one by
validation.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

from mr2ct.data.io import InputError, read_volume, write_volume
from mr2ct.data.validation import AIR_HU

__all__ = ["body_mask", "write_body_mask"]

#: HU above which a CT voxel is tissue: validation's boundary between air and body (halfway to fat)
BODY_THRESHOLD_HU = AIR_HU


def _largest_component(mask: np.ndarray) -> np.ndarray:
    components, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def body_mask(ct_hu: np.ndarray, threshold_hu: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The body of a CT (array in HU, axial slices along the last axis) as a boolean array."""
    mask = _largest_component(ct_hu > threshold_hu)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    return _largest_component(mask)


def write_body_mask(ct: str | os.PathLike, out: str | os.PathLike) -> dict[str, object]:
    """Derive the body mask of the CT file ``ct`` and write it on the CT's grid (uint8, atomically)."""
    volume = read_volume(ct)
    mask = body_mask(volume.data)
    if not mask.any():
        raise InputError(f"{ct}: no voxel above {BODY_THRESHOLD_HU:g} HU: no body to derive a mask from")
    write_volume(out, volume.with_data(mask.astype(np.float32)), np.uint8)
    return {"voxels": int(mask.sum()), "share": round(float(mask.mean()), 4)}
