"""Per-subject validation: geometry between a subject's volumes and the values inside them
(NaN, infinity, HU, masks, information content), each refusal naming the subject and file.
"""

from __future__ import annotations

import numpy as np
import pytest

from mr2ct.data.io import read_volume

from .ingestion_support import (
    SUBJECTS,
    expect_report_failure,
    load_disk,
    report,
    shift_origin,
    synthrad_config,
    write_nifti,
)


# --- geometry --------------------------------------------------------------- #
def test_mr_ct_shape_mismatch(tmp_path, synthrad):
    path = synthrad / "phantom003" / "mr.nii.gz"
    mr, affine = load_disk(path)
    write_nifti(path, mr[:, :, :-2].astype(np.int16), affine)
    expect_report_failure(
        synthrad_config(synthrad),
        tmp_path,
        "subject 'phantom003'",
        str(path),
        "shape",
        "differs from the CT's",
        "must be registered to its CT first: set config key data.registration: rigid",
    )


def test_mask_larger_than_the_image(tmp_path, synthrad):
    path = synthrad / "phantom002" / "mask.nii.gz"
    mask, affine = load_disk(path)
    write_nifti(path, np.pad(mask, ((0, 8), (0, 8), (0, 0))).astype(np.uint8), affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom002'", str(path), "shape", "differs from the CT's"
    )


def test_spacing_mismatch(tmp_path, synthrad):
    path = synthrad / "phantom001" / "mask.nii.gz"
    mask, affine = load_disk(path)
    affine = affine.copy()
    affine[2, 2] = 5.0  # 6 mm slices in the CT, 5 mm in the mask
    write_nifti(path, mask.astype(np.uint8), affine)
    expect_report_failure(synthrad_config(synthrad), tmp_path, "subject 'phantom001'", str(path), "spacing", "differs")


def test_origin_mismatch_beyond_tolerance(tmp_path, synthrad):
    path = synthrad / "phantom002" / "mr.nii.gz"
    shift_origin(path, 0.5)
    expect_report_failure(synthrad_config(synthrad), tmp_path, "subject 'phantom002'", str(path), "origin", "differs")
    # a looser tolerance accepts it
    assert report(synthrad_config(synthrad, geometry_tolerance_mm=1.0), tmp_path)["subject"].tolist() == SUBJECTS


def test_origin_mismatch_within_tolerance_is_accepted(tmp_path, synthrad):
    shift_origin(synthrad / "phantom002" / "mr.nii.gz", 0.004)  # default tolerance 0.01 mm
    assert report(synthrad_config(synthrad), tmp_path)["subject"].tolist() == SUBJECTS


def test_direction_mismatch(tmp_path, synthrad):
    path = synthrad / "phantom003" / "mr.nii.gz"
    mr, affine = load_disk(path)
    angle = np.radians(5.0)  # same origin and spacing, rotated 5° about z
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = affine.copy()
    affine[:3, :3] = rotation @ affine[:3, :3]
    write_nifti(path, mr.astype(np.int16), affine)
    expect_report_failure(synthrad_config(synthrad), tmp_path, "subject 'phantom003'", str(path), "direction differs")


# --- voxel values ----------------------------------------------------------- #
def test_nan_voxels(tmp_path, synthrad):
    path = synthrad / "phantom001" / "mr.nii.gz"
    mr, affine = load_disk(path)
    mr = mr.astype(np.float32)
    mr[10, 20, 5] = np.nan
    write_nifti(path, mr, affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom001'", str(path), "1 voxel(s) are NaN or infinite"
    )


def test_inf_voxels(tmp_path, synthrad):
    path = synthrad / "phantom002" / "ct.nii.gz"
    ct, affine = load_disk(path)
    ct = ct.astype(np.float32)
    ct[0, 0, :3] = np.inf
    ct[1, 1, 1] = -np.inf
    write_nifti(path, ct, affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom002'", str(path), "4 voxel(s) are NaN or infinite"
    )


def test_ct_not_in_hounsfield_units(tmp_path, synthrad):
    """Raw scanner values 0..4095 stored without scl_inter."""
    path = synthrad / "phantom003" / "ct.nii.gz"
    hu, affine = load_disk(path)
    write_nifti(path, (hu + 1024).astype(np.uint16), affine)
    assert read_volume(path).data.min() == 0
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom003'", str(path), "Hounsfield", "minimum 0", "scl_inter"
    )


def test_empty_mask(tmp_path, synthrad):
    path = synthrad / "phantom001" / "mask.nii.gz"
    mask, affine = load_disk(path)
    write_nifti(path, np.zeros_like(mask, dtype=np.uint8), affine)
    expect_report_failure(synthrad_config(synthrad), tmp_path, "subject 'phantom001'", str(path), "mask is empty")


def test_non_binary_mask(tmp_path, synthrad):
    path = synthrad / "phantom002" / "mask.nii.gz"
    mask, affine = load_disk(path)
    write_nifti(path, (mask * 255).astype(np.uint8), affine)  # a common 0/255 export
    expect_report_failure(synthrad_config(synthrad), tmp_path, "subject 'phantom002'", str(path), "only 0 and 1", "255")


def test_mask_that_is_not_a_body_mask(tmp_path, synthrad):
    """A mask of the whole field of view (air included) passes every shape check but is no body mask."""
    path = synthrad / "phantom002" / "mask.nii.gz"
    mask, affine = load_disk(path)
    write_nifti(path, np.ones_like(mask, dtype=np.uint8), affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom002'", str(path), "not a body mask", "are air in the CT"
    )


@pytest.mark.parametrize("modality", ["mr", "ct"])
def test_volume_without_information(tmp_path, synthrad, modality):
    """An all-zero volume (a failed export) would poison the normalisation."""
    path = synthrad / "phantom001" / f"{modality}.nii.gz"
    data, affine = load_disk(path)
    write_nifti(path, np.zeros_like(data, dtype=np.int16), affine)
    expect_report_failure(
        synthrad_config(synthrad),
        tmp_path,
        "subject 'phantom001'",
        str(path),
        "carries no information",
        "every voxel is 0",
    )


def test_mr_constant_inside_the_body(tmp_path, synthrad):
    path = synthrad / "phantom003" / "mr.nii.gz"
    data, affine = load_disk(path)
    mask, _ = load_disk(synthrad / "phantom003" / "mask.nii.gz")
    data[mask > 0] = 100.0
    write_nifti(path, data.astype(np.float32), affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom003'", str(path), "no information inside the body mask"
    )
