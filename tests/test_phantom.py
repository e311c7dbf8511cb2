"""The phantom cohort: determinism, geometry, tissue values and anatomical variation."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mr2ct.data.io import read_volume
from mr2ct.data.phantom import LABELS, PhantomSettings, render_subject, sample_subject, write_subject

from .conftest import TINY_SETTINGS

MODALITIES = ("mr", "ct", "mask", "labels")
ID = {name: i for i, name in LABELS.items()}


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_gives_bit_identical_files(tmp_path):
    a = write_subject(tmp_path / "a", seed=3, index=1, settings=TINY_SETTINGS)
    b = write_subject(tmp_path / "b", seed=3, index=1, settings=TINY_SETTINGS)
    c = write_subject(tmp_path / "c", seed=4, index=1, settings=TINY_SETTINGS)
    for name in MODALITIES:
        assert _sha(a[name]) == _sha(b[name]), name
    assert _sha(a["ct"]) != _sha(c["ct"])


def test_cli_writes_cohort_tables_and_is_deterministic(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "mr2ct.cli",
        "phantom",
        "--subjects",
        "2",
        "--seed",
        "5",
        "--matrix",
        "96",
        "72",
        "--spacing",
        "5",
        "5",
        "7",
        "--quiet",
        "--jobs",
        "2",
    ]
    subprocess.run([*cmd, "--out", str(tmp_path / "x")], check=True, capture_output=True, timeout=600)
    subprocess.run([*cmd, "--out", str(tmp_path / "y")], check=True, capture_output=True, timeout=600)
    files_x = sorted(p.relative_to(tmp_path / "x") for p in (tmp_path / "x").rglob("*") if p.is_file())
    assert [str(p) for p in files_x] == [
        "labels.tsv",
        "phantom001/ct.nii.gz",
        "phantom001/labels.nii.gz",
        "phantom001/mask.nii.gz",
        "phantom001/mr.nii.gz",
        "phantom002/ct.nii.gz",
        "phantom002/labels.nii.gz",
        "phantom002/mask.nii.gz",
        "phantom002/mr.nii.gz",
        "subjects.tsv",
    ]
    for rel in files_x:
        assert _sha(tmp_path / "x" / rel) == _sha(tmp_path / "y" / rel), rel
    labels = pd.read_csv(tmp_path / "x" / "labels.tsv", sep="\t")
    assert dict(zip(labels["id"], labels["name"])) == LABELS
    sheet = pd.read_csv(tmp_path / "x" / "subjects.tsv", sep="\t")
    assert list(sheet.columns[:5]) == ["subject", "mr", "ct", "mask", "labels"]


def test_geometry_is_shared_anisotropic_and_ct_is_int16(tiny_cohort):
    import nibabel as nib

    folder = tiny_cohort / "phantom001"
    volumes = {m: read_volume(folder / f"{m}.nii.gz") for m in MODALITIES}
    ref = volumes["ct"]
    for name, vol in volumes.items():
        assert vol.data.shape == ref.data.shape, name
        np.testing.assert_array_equal(vol.affine, ref.affine)
    assert ref.spacing == pytest.approx(TINY_SETTINGS.spacing)
    assert nib.load(folder / "ct.nii.gz").get_data_dtype() == np.int16


@pytest.fixture(scope="module")
def default_subject():
    """One subject at the default (1 × 1 × 2.5 mm) resolution, rendered in memory."""
    return render_subject(sample_subject(42, 0), PhantomSettings(), noise_seed=1)


def test_default_grid_is_an_anisotropic_pelvis_field_of_view(default_subject):
    ct = default_subject["ct"]
    assert ct.spacing == pytest.approx((1.0, 1.0, 2.5))
    nx, ny, nz = ct.data.shape
    assert (nx, ny) == (448, 320)
    assert 150 <= nz * 2.5 <= 230  # below the lesser trochanters to the sacral promontory, in mm


def test_tissues_have_realistic_hounsfield_units(default_subject):
    ct, labels, mask = (default_subject[k].data for k in ("ct", "labels", "mask"))
    inside = mask > 0
    assert np.median(ct[~inside]) == pytest.approx(-1000, abs=30)  # air
    muscle = np.isin(labels, [ID["gluteus_maximus_left"], ID["gluteus_maximus_right"], ID["iliopsoas_left"]])
    assert 25 < np.median(ct[muscle]) < 65
    assert -10 < np.median(ct[labels == ID["bladder"]]) < 30  # urine
    fat = inside & (labels == 0) & (ct < -50) & (ct > -200)
    assert -125 < np.median(ct[fat]) < -75
    bone = np.isin(labels, [ID["pelvis"], ID["femur_left"], ID["femur_right"]])
    assert np.percentile(ct[bone], 95) > 1000  # cortical bone
    assert 100 < np.median(ct[bone]) < 500  # mostly cancellous bone


def test_mr_is_t1_like_and_not_a_global_map_of_ct(default_subject):
    mr, ct, labels, mask = (default_subject[k].data for k in ("mr", "ct", "labels", "mask"))
    inside = mask > 0
    fat = inside & (labels == 0) & (ct < -50) & (ct > -200)
    muscle = np.isin(labels, [ID["gluteus_maximus_left"], ID["gluteus_maximus_right"]])
    cortex = np.isin(labels, [ID["femur_left"], ID["femur_right"]]) & (ct > 1000)
    assert np.median(mr[fat]) > 1.8 * np.median(mr[muscle])  # fat bright, muscle intermediate
    assert np.median(mr[cortex]) < 0.5 * np.median(mr[muscle])  # cortical bone dark
    assert np.median(mr[~inside]) < 0.1 * np.median(mr[fat])  # air dark
    # dark MR holds both air and dense bone: no intensity map can tell them apart
    dark = mr < 0.15 * np.median(mr[fat])
    assert (ct[dark] < -900).mean() > 0.5
    assert (dark & (ct > 700)).sum() > 1000


def test_subjects_vary_but_cover_the_same_anatomical_range(tiny_cohort):
    sheet = pd.read_csv(tiny_cohort / "subjects.tsv", sep="\t")
    for column in ("scale", "fat_mm", "bladder_fill", "femur_left_abduction", "femur_right_rotation"):
        assert sheet[column].nunique() == len(sheet), column
    body_volumes = []
    for subject in sheet["subject"]:
        labels = read_volume(tiny_cohort / subject / "labels.nii.gz").data
        mask = read_volume(tiny_cohort / subject / "mask.nii.gz").data
        body_volumes.append(mask.sum())
        present_bottom = set(np.unique(labels[:, :, :2])) - {0}
        present_top = set(np.unique(labels[:, :, -2:])) - {0}
        assert {ID["femur_left"], ID["femur_right"]} <= present_bottom, subject  # proximal femur
        assert ID["pelvis"] in present_top and ID["femur_left"] not in present_top, subject  # iliac wings
        assert set(LABELS) <= set(np.unique(labels)), subject
    assert np.std(body_volumes) / np.mean(body_volumes) > 0.03
