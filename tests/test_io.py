"""mr2ct.data.io at the input boundary: what reading a NIfTI file refuses, what :func:`check_file` adds
(the whole gzip stream, units, qform/sform), and tables whose ids stay as written."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mr2ct.data.io import InputError, check_file, read_table, read_volume


def volume(shape=(24, 20, 10)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.int16).reshape(shape) % 1000 - 500


AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE, qform: int = 1, sform: int = 1) -> Path:
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=sform)
    image.set_qform(affine, code=qform)
    nib.save(image, str(path))
    return path


# --------------------------------------------------------------------------- #
# the gzip stream
# --------------------------------------------------------------------------- #
def flip(offset):
    def change(b: bytearray) -> bytearray:
        b[offset] ^= 0x10
        return b

    return change


DAMAGE = {
    "crc_in_trailer": (flip(-8), "CRC-32 checksum does not match"),
    "length_in_trailer": (flip(-2), "length recorded at its end does not match"),
    "trailer_cut": (lambda b: b[:-8], "ends before its end-of-stream marker"),
    "trailing_garbage": (lambda b: b + b"\x01garbage", "unexpected bytes follow the compressed stream"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_gzip_stream_reads_but_fails_the_check(tmp_path, kind):
    """nibabel stops at the last voxel and checks neither CRC nor length: check_file reads the whole stream."""
    path = save(tmp_path / "ct.nii.gz", volume())
    good = read_volume(path).data
    change, fragment = DAMAGE[kind]
    path.write_bytes(bytes(change(bytearray(path.read_bytes()))))
    np.testing.assert_array_equal(read_volume(path).data, good)  # what nibabel alone lets through
    with pytest.raises(InputError) as info:
        check_file(path)
    assert str(path) in str(info.value) and fragment in str(info.value) and "copy it again" in str(info.value)


def test_a_flipped_payload_byte_fails_the_crc(tmp_path):
    path = save(tmp_path / "mr.nii.gz", np.random.default_rng(0).integers(0, 3000, (40, 40, 12)).astype(np.int16))
    payload = bytearray(path.read_bytes())
    payload[len(payload) * 3 // 4] ^= 0x01
    path.write_bytes(bytes(payload))
    with pytest.raises(InputError, match="gzip stream is damaged"):
        check_file(path)


def test_a_truncated_payload_names_the_file_and_says_cut_short(tmp_path):
    path = save(tmp_path / "mr.nii.gz", np.random.default_rng(1).integers(0, 3000, (40, 40, 12)).astype(np.int16))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(InputError, match=r"cannot read voxel data: the file ends before its last voxel .*cut short"):
        read_volume(path)


def test_digest_is_the_sha256_of_the_file_and_valid_variants_pass(tmp_path):
    path = save(tmp_path / "ct.nii.gz", volume())
    assert check_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    raw = tmp_path / "ct.nii"
    raw.write_bytes(gzip.decompress(path.read_bytes()))
    assert check_file(raw) == hashlib.sha256(raw.read_bytes()).hexdigest()
    # two gzip members (bgzip, pigz, cat a.gz b.gz) and zero padding after the stream are valid gzip
    payload = raw.read_bytes()
    members = tmp_path / "members.nii.gz"
    members.write_bytes(gzip.compress(payload[:1000]) + gzip.compress(payload[1000:]))
    padded = tmp_path / "padded.nii.gz"
    padded.write_bytes(path.read_bytes() + b"\0" * 512)
    for variant in (members, padded):
        check_file(variant)
        np.testing.assert_array_equal(read_volume(variant).data, read_volume(path).data)


# --------------------------------------------------------------------------- #
# voxels and header
# --------------------------------------------------------------------------- #
def test_complex_and_colour_voxels_are_refused(tmp_path):
    data = volume().astype(np.float32)
    complex_path = save(tmp_path / "complex.nii.gz", (data + 1j * data).astype(np.complex64))
    with pytest.raises(InputError, match=r"complex\.nii\.gz: voxels are complex numbers \(complex64\)"):
        read_volume(complex_path)
    rgba = np.zeros(data.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    with pytest.raises(InputError, match="voxels are RGBA colour values"):
        read_volume(save(tmp_path / "rgba.nii.gz", rgba))


def test_a_time_series_names_its_volumes(tmp_path):
    path = save(tmp_path / "mr.nii.gz", np.stack([volume()] * 5, axis=-1))
    with pytest.raises(InputError, match=r"expected a 3D image, got shape \(24, 20, 10, 5\) \(5 volumes"):
        read_volume(path)


def test_zero_pixdim_is_refused_without_nibabel_noise(tmp_path, capfd):
    image = nib.Nifti1Image(volume(), None)
    image.header.set_qform(None, code=0)
    image.header["pixdim"][1:4] = [0.8, 0.0, 2.5]
    nib.save(image, str(tmp_path / "ct.nii.gz"))
    capfd.readouterr()
    with pytest.raises(InputError, match=r"the voxel size pixdim\[2\] is 0: the pixel spacing is missing"):
        read_volume(tmp_path / "ct.nii.gz")
    assert capfd.readouterr().err == "", "nibabel's 'setting 0 dims to 1' must not reach the terminal"


@pytest.mark.parametrize(("unit", "accepted"), [("mm", True), ("unknown", True), ("meter", False), ("micron", False)])
def test_spatial_units(tmp_path, unit, accepted):
    image = nib.Nifti1Image(volume(), AFFINE)
    image.set_qform(AFFINE, code=1)
    image.header.set_xyzt_units(unit, "sec")
    path = tmp_path / "ct.nii.gz"
    nib.save(image, str(path))
    if accepted:
        check_file(path)
    else:
        with pytest.raises(InputError, match=r"xyzt_units.*in millimetres"):
            check_file(path)


@pytest.mark.parametrize(("qform", "sform"), [(1, 0), (0, 1), (0, 2), (1, 1), (2, 4)])
def test_qform_or_sform_alone_or_agreeing_is_accepted(tmp_path, qform, sform):
    check_file(save(tmp_path / "ct.nii.gz", volume(), qform=qform, sform=sform))


def test_an_oblique_scan_passes_despite_the_qform_precision(tmp_path):
    """The qform is stored as a float32 quaternion: on an oblique grid of 500 x 500 x 300 mm its corners must
    stay within the default tolerance of the sform's (0.01 mm)."""
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    affine[:3, :3] = Rotation.from_euler("xyz", [7.3, -4.1, 11.9], degrees=True).as_matrix() @ np.diag(
        [1.953, 1.953, 3.75]
    )
    affine[:3, 3] = [-250.13, -180.77, -612.4]
    image = nib.Nifti1Image(np.zeros((256, 256, 80), np.uint8), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(tmp_path / "oblique.nii"))
    check_file(tmp_path / "oblique.nii", tolerance_mm=0.01)


def test_a_disagreeing_qform_is_refused_with_both_geometries(tmp_path):
    path = tmp_path / "ct.nii.gz"
    image = nib.Nifti1Image(volume(), AFFINE)
    image.set_sform(AFFINE, code=1)
    shifted = AFFINE.copy()
    shifted[:3, 3] = [0.0, 0.0, 0.5]
    image.set_qform(shifted, code=1)
    nib.save(image, str(path))
    with pytest.raises(InputError, match=r"qform and sform disagree: they place voxels up to 0\.5 mm apart"):
        check_file(path)
    check_file(path, tolerance_mm=1.0)


def test_a_degenerate_affine_is_refused(tmp_path):
    affine = AFFINE.copy()
    affine[:3, 1] = affine[:3, 0]  # two voxel axes along x
    image = nib.Nifti1Image(volume(), None)
    image.header.set_sform(affine, code=1)
    image.header["qform_code"] = 0
    nib.save(image, str(tmp_path / "ct.nii.gz"))
    with pytest.raises(InputError, match="maps two voxel axes onto the same direction"):
        read_volume(tmp_path / "ct.nii.gz")


# --------------------------------------------------------------------------- #
# tables whose ids stay as written
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("ids", "naive"),
    [
        (["001", "1e3", "7"], [1.0, 1000.0, 7.0]),  # every id numeric-looking: the column becomes float
        (["NA", "nan", "None", "s1"], [None, None, None, "s1"]),  # missing-looking ids become NaN
    ],
    ids=["numbers", "missing_values"],
)
def test_read_table_keeps_ids_as_written_and_parses_the_rest(tmp_path, ids, naive):
    n = len(ids)
    table = pd.DataFrame({"subject": ids, "mae": [1.5, np.nan, *range(n - 2)], "size": [2] * n})
    for sep, name in ((",", "synthesis_metrics.csv"), ("\t", "splits.tsv")):
        path = tmp_path / name
        table.to_csv(path, sep=sep, index=False)
        plain = pd.read_csv(path, sep=sep)["subject"]
        assert [None if pd.isna(v) else v for v in plain] == naive  # what a plain read makes of them
        back = read_table(path, sep=sep)
        assert back["subject"].tolist() == ids
        assert np.isnan(back["mae"].iloc[1]) and back["mae"].dtype == float and back["size"].dtype.kind == "i"
