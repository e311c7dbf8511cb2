"""DICOM series as inputs: written scanner-style by the tests (pydicom), read back exactly; refusals name the folder."""

from __future__ import annotations

import numpy as np
import pytest

from mr2ct.cli import main
from mr2ct.data.dicom import find_series, read_series
from mr2ct.data.io import InputError, read_volume, volume_from_affine

from .dicom_support import oblique_affine, write_series

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MARK = (5, 7, 3)


def _stored(shape=(40, 32, 12), seed=0):
    stored = np.random.default_rng(seed).integers(0, 3000, size=shape).astype(np.uint16)
    stored[MARK] = 4000  # one voxel no other has: where the reader puts it is checked in world mm
    return stored


def _check(volume, stored, lps, intercept=-1024.0, slope=1.0):
    expected = volume_from_affine(stored.astype(np.float32) * slope + intercept, LPS_TO_RAS @ lps)
    np.testing.assert_array_equal(volume.data, expected.data)
    np.testing.assert_allclose(volume.affine, expected.affine, atol=1e-3)
    (index,) = np.argwhere(volume.data == np.float32(4000 * slope + intercept))
    np.testing.assert_allclose((volume.affine @ [*index, 1])[:3], (LPS_TO_RAS @ lps @ [*MARK, 1])[:3], atol=1e-3)


@pytest.mark.parametrize("degrees", [(0.0, 0.0, 0.0), (12.0, -7.0, 20.0), (180.0, 0.0, 90.0)])
def test_a_ct_series_reads_back_exactly_in_hu_with_its_geometry(tmp_path, degrees):
    """Unsigned 16-bit pixels with intercept -1024, shuffled extension-less names, axial, oblique or flipped."""
    stored = _stored()
    lps = oblique_affine((0.8, 0.75, 2.5), (-120.5, -98.25, 301.0), degrees)
    write_series(tmp_path / "ct", stored, lps, "CT", intercept=-1024.0)
    _check(read_series(tmp_path / "ct"), stored, lps)


def test_convert_writes_a_nifti_that_reads_back_as_the_series(tmp_path, capsys):
    stored = _stored(seed=1)
    lps = oblique_affine((1.1, 1.1, 3.0), (10.0, -20.0, 30.0))
    write_series(tmp_path / "mr", stored, lps, "MR", intercept=0.0, slope=0.5)
    assert main(["convert", str(tmp_path / "mr"), str(tmp_path / "mr.nii.gz")]) == 0
    assert "wrote" in capsys.readouterr().out
    _check(read_volume(tmp_path / "mr.nii.gz"), stored, lps, intercept=0.0, slope=0.5)


def test_a_folder_of_two_series_is_refused_listing_both_unless_one_is_named(tmp_path, capsys):
    lps = oblique_affine((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    first = write_series(tmp_path / "mixed", _stored(), lps, "CT", description="abdomen 2mm", seed=1)
    second = write_series(tmp_path / "mixed", _stored(seed=2), lps, "CT", description="bone kernel", seed=2)
    with pytest.raises(InputError) as err:
        read_series(tmp_path / "mixed")
    message = str(err.value)
    assert str(tmp_path / "mixed") in message and first in message and second in message
    assert "abdomen 2mm" in message and "bone kernel" in message
    assert [s.uid for s in find_series(tmp_path / "mixed")] == sorted([first, second])
    _check(read_series(tmp_path / "mixed", second), _stored(seed=2), lps)
    out = tmp_path / "ct.nii.gz"
    assert main(["convert", f"{tmp_path / 'mixed'}#{first}", str(out)]) == 0
    _check(read_volume(out), _stored(), lps)
    assert main(["convert", str(tmp_path / "mixed"), str(tmp_path / "no.nii.gz")]) == 2
    assert "2 DICOM series" in capsys.readouterr().err and not (tmp_path / "no.nii.gz").exists()


def test_missing_slices_are_refused_naming_the_folder(tmp_path):
    lps = oblique_affine((1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    write_series(tmp_path / "gap", _stored(), lps, "CT", skip=(6, 7))
    with pytest.raises(InputError, match=r"gap: about 2 slice\(s\) missing"):
        read_series(tmp_path / "gap")


def test_irregular_spacing_and_mixed_orientations_are_refused(tmp_path):
    lps = oblique_affine((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
    uid = write_series(tmp_path / "irregular", _stored(shape=(40, 32, 6)), lps, "CT", seed=1)
    shifted = lps.copy()
    shifted[2, 3] += 6 * 2.0 + 0.7  # a second stack continuing the first at another step
    write_series(tmp_path / "irregular", _stored(shape=(40, 32, 6), seed=3), shifted, "CT", seed=2, series_uid=uid)
    with pytest.raises(InputError, match="irregular: irregular slice spacing"):
        read_series(tmp_path / "irregular")
    tilted = oblique_affine((1.0, 1.0, 2.0), (0.0, 0.0, 40.0), (15.0, 0.0, 0.0))
    uid = write_series(tmp_path / "tilted", _stored(shape=(40, 32, 6)), lps, "CT", seed=1)
    write_series(tmp_path / "tilted", _stored(shape=(40, 32, 6), seed=3), tilted, "CT", seed=2, series_uid=uid)
    with pytest.raises(InputError, match="tilted: mixed slice orientations"):
        read_series(tmp_path / "tilted")


def test_a_folder_without_dicom_images_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README").write_text("not an image")
    with pytest.raises(InputError, match="notes: the folder holds no DICOM image files"):
        read_series(tmp_path / "notes")


def test_a_real_ct_slice_shipped_with_pydicom_goes_through_the_dicom_path(tmp_path):
    """pydicom's CT_small (a real scan, signed pixels with its own rescale) stacked into a series: the
    converted HU are the file's own pixel values times its slope plus its intercept."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    folder = tmp_path / "real"
    folder.mkdir()
    row, col = np.array(source.ImageOrientationPatient[:3]), np.array(source.ImageOrientationPatient[3:])
    normal, origin = np.cross(row, col), np.array(source.ImagePositionPatient, dtype=float)
    series = generate_uid(entropy_srcs=["real"])
    for k in range(4):
        ds = source.copy()
        ds.SeriesInstanceUID, ds.SOPInstanceUID = series, generate_uid(entropy_srcs=["real", str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [f"{v:.4f}" for v in origin + 5.0 * k * normal]
        ds.save_as(folder / f"slice{3 - k}")
    volume = read_series(folder)
    hu = source.pixel_array.astype(np.float64) * float(source.RescaleSlope) + float(source.RescaleIntercept)
    assert volume.data.shape[2] == 4 or 4 in volume.data.shape
    assert np.isclose(volume.data.mean(), hu.mean(), atol=0.01) and volume.data.max() == hu.max()
    assert np.allclose(sorted(volume.spacing), sorted([*map(float, source.PixelSpacing), 5.0]), atol=1e-3)
