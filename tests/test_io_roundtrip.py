"""NIfTI I/O round trips (tests/test_io.py has the input boundary): encodings read back with the
same HU and geometry, byte-identical rewrites, unreadable, truncated and wrongly shaped files
refused, atomic writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mr2ct.cli import main as cli_main
from mr2ct.data.cohort import cohort_from_config
from mr2ct.data.io import InputError, atomic_write_text, read_volume, write_volume
from mr2ct.data.phantom import LABELS
from mr2ct.data.validation import validate_subject

from .ingestion_support import (
    BAD_PAYLOADS,
    ENCODINGS,
    MATRIX,
    SEED,
    SPACING,
    SUBJECTS,
    expect_report_failure,
    load_disk,
    lps,
    raw_header,
    report,
    sha256,
    synthrad_config,
    tree_hashes,
    write_encoding,
    write_nifti,
)


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_reencoded_ct_reads_as_the_same_hu_and_geometry(tmp_path, cohort_dir, name):
    source = cohort_dir / "phantom001" / "ct.nii.gz"
    original = read_volume(source)
    path = write_encoding(tmp_path / f"{name}.nii.gz", source, name)
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.data, original.data)
    assert volume.data.dtype == original.data.dtype
    np.testing.assert_array_equal(volume.affine, original.affine)
    assert volume.disk_axcodes == tuple(ENCODINGS[name][0])
    assert volume.spacing == original.spacing
    assert volume.origin == original.origin
    np.testing.assert_array_equal(volume.direction, np.eye(3))


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_read_write_read_round_trips_data_and_geometry(tmp_path, cohort_dir, name):
    orientation, dtype, inter = ENCODINGS[name]
    path = write_encoding(tmp_path / f"{name}.nii.gz", cohort_dir / "phantom001" / "ct.nii.gz", name)
    first = read_volume(path)
    again = tmp_path / "again.nii.gz"
    write_volume(again, first, dtype, intercept=inter or 0.0)
    second = read_volume(again)
    np.testing.assert_array_equal(second.data, first.data)
    np.testing.assert_array_equal(second.affine, first.affine)
    assert second.spacing == first.spacing
    assert second.origin == first.origin
    np.testing.assert_array_equal(second.direction, first.direction)
    assert second.disk_axcodes == first.disk_axcodes == tuple(orientation)
    # on disk too: same orientation, same on-disk affine, same encoding
    np.testing.assert_array_equal(nib.load(str(again)).affine, nib.load(str(path)).affine)
    header = raw_header(again)
    assert header.get_data_dtype() == np.dtype(dtype)
    assert float(header["scl_inter"]) == (inter or 0.0)


def test_mixed_orientations_within_a_subject_validate_like_the_original(tmp_path, synthrad):
    """A subject whose CT is stored LPS/uint16 and mask LPS is the same physical subject."""
    original = validate_subject(cohort_from_config(synthrad_config(synthrad))["phantom002"], set(LABELS))
    folder = synthrad / "phantom002"
    ct = write_encoding(tmp_path / "ct.nii.gz", folder / "ct.nii.gz", "lps_uint16_intercept")
    shutil.move(ct, folder / "ct.nii.gz")
    mask, affine = lps(*load_disk(folder / "mask.nii.gz"))
    write_nifti(folder / "mask.nii.gz", mask.astype(np.uint8), affine)
    row = validate_subject(cohort_from_config(synthrad_config(synthrad))["phantom002"], set(LABELS))
    assert row.pop("orientation") == "LPS" and original.pop("orientation") == "RAS"
    assert row == original


def test_writing_the_same_volume_twice_gives_identical_bytes(tmp_path, cohort_dir):
    volume = read_volume(write_encoding(tmp_path / "lps.nii.gz", cohort_dir / "phantom001" / "ct.nii.gz", "lps"))
    a = write_volume(tmp_path / "a.nii.gz", volume)
    b = write_volume(tmp_path / "sub" / "b.nii.gz", volume)
    digest = sha256(a)
    assert sha256(b) == digest
    write_volume(a, volume)  # overwrite in place
    assert sha256(a) == digest
    assert a.read_bytes()[4:8] == b"\0\0\0\0", "gzip header must carry no timestamp"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "lps.nii.gz", "sub"], "no temporary files left"


def test_phantom_cli_is_byte_for_byte_deterministic(tmp_path, cohort_dir):
    def run(out: Path, seed: int, jobs: int) -> dict[str, str]:
        argv = ["phantom", "--out", str(out), "--subjects", "2", "--seed", str(seed), "--matrix", *map(str, MATRIX)]
        argv += ["--spacing", *map(str, SPACING), "--jobs", str(jobs), "--quiet"]
        assert cli_main(argv) == 0
        return tree_hashes(out)

    first = run(tmp_path / "a", SEED, jobs=1)
    second = run(tmp_path / "b", SEED, jobs=2)
    other = run(tmp_path / "c", SEED + 1, jobs=1)
    volumes = [k for k in first if k.endswith(".nii.gz")]
    assert len(volumes) == 8
    assert first == second, "same seed must give byte-identical files (whatever the number of processes)"
    assert all(other[k] != first[k] for k in volumes), "a different seed must give different volumes"
    assert other["subjects.tsv"] != first["subjects.tsv"]
    # a subject does not depend on the cohort size: the session's 3-subject cohort has the same files
    for key in volumes:
        assert sha256(cohort_dir / key) == first[key]


@pytest.mark.parametrize("kind", list(BAD_PAYLOADS))
def test_unreadable_or_non_nifti_file(tmp_path, synthrad, kind):
    path = synthrad / "phantom002" / "ct.nii.gz"
    path.write_bytes(BAD_PAYLOADS[kind](path.read_bytes()))
    with pytest.raises(InputError, match="not a readable NIfTI image"):
        read_volume(path)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom002'", str(path), "not a readable NIfTI image"
    )


def test_truncated_nifti(tmp_path, synthrad):
    path = synthrad / "phantom001" / "mr.nii.gz"
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])
    with pytest.raises(InputError, match="cannot read voxel data"):
        read_volume(path)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom001'", str(path), "cannot read voxel data"
    )


# --- dimensionality --------------------------------------------------------- #
def test_2d_image(tmp_path, synthrad):
    path = synthrad / "phantom001" / "ct.nii.gz"
    hu, affine = load_disk(path)
    write_nifti(path, hu[:, :, hu.shape[2] // 2].astype(np.int16), affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom001'", str(path), "expected a 3D image", "(112, 80)"
    )


def test_4d_image_with_two_volumes(tmp_path, synthrad):
    path = synthrad / "phantom002" / "mr.nii.gz"
    mr, affine = load_disk(path)
    write_nifti(path, np.stack([mr, mr], axis=-1).astype(np.int16), affine)
    expect_report_failure(
        synthrad_config(synthrad),
        tmp_path,
        "subject 'phantom002'",
        str(path),
        "expected a 3D image",
        f"{(*mr.shape, 2)}",
    )


def test_4d_image_with_one_volume_is_accepted_as_3d(tmp_path, synthrad, cohort_dir):
    path = synthrad / "phantom002" / "mr.nii.gz"
    mr, affine = load_disk(path)
    write_nifti(path, mr[..., None].astype(np.int16), affine)
    np.testing.assert_array_equal(read_volume(path).data, read_volume(cohort_dir / "phantom002" / "mr.nii.gz").data)
    assert report(synthrad_config(synthrad), tmp_path)["subject"].tolist() == SUBJECTS


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    from mr2ct.data.io import atomic_path

    target = tmp_path / "table.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left


def test_atomic_write_gives_normal_file_permissions(tmp_path):
    from mr2ct.data import io as mio

    target = atomic_write_text(tmp_path / "shared.txt", "x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~mio._UMASK
