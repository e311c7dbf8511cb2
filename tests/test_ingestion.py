"""Cohort ingestion: sources, encodings, and one test per validation failure.

Everything goes through public interfaces (``mr2ct.cohort``, ``mr2ct.config``,
``mr2ct.io``, ``mr2ct.splits`` and the ``mr2ct`` command line). One small
phantom cohort is generated per session; every test copies what it changes.
Broken inputs are written with nibabel directly, not with our writer, so the
reader is tested against files it did not make.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from mr2ct.cli import main as cli_main
from mr2ct.cohort import (
    cohort_from_config,
    discover_synthrad,
    read_label_table,
    read_sheet,
    validate_cohort,
    validate_subject,
    write_validation_report,
)
from mr2ct.config import load_config, load_yaml, merge, validate_config
from mr2ct.io import InputError, atomic_write_text, read_volume, write_volume
from mr2ct.phantom import LABELS, PhantomSettings, write_cohort
from mr2ct.splits import splits_from_config

REPO = Path(__file__).resolve().parents[1]
SEED = 7
MATRIX = (112, 80)
SPACING = (4.0, 4.0, 6.0)
SUBJECTS = ["phantom001", "phantom002", "phantom003"]
MODALITIES = ("mr", "ct", "mask", "labels")


# --------------------------------------------------------------------------- #
# fixtures and helpers
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="session")
def phantom_results(tmp_path_factory) -> Path:
    """A results folder holding a 3-subject phantom cohort in ``cohort/``; read-only."""
    results = tmp_path_factory.mktemp("ingestion") / "results"
    write_cohort(
        results / "cohort",
        n_subjects=3,
        seed=SEED,
        settings=PhantomSettings(matrix=MATRIX, spacing=SPACING),
        progress=False,
    )
    return results


@pytest.fixture
def cohort_dir(phantom_results) -> Path:
    return phantom_results / "cohort"


@pytest.fixture
def synthrad(tmp_path, cohort_dir) -> Path:
    """A private SynthRAD-style copy: ``<root>/<subject>/{mr,ct,mask,labels}.nii.gz``."""
    root = tmp_path / "synthrad"
    for subject in SUBJECTS:
        shutil.copytree(cohort_dir / subject, root / subject)
    shutil.copy(cohort_dir / "labels.tsv", tmp_path / "labels.tsv")
    return root


def base_config(**data) -> dict:
    """The shipped config.yaml for the 3-subject test cohort, with ``data`` overrides (not yet validated)."""
    overrides = {
        "seed": SEED,
        "data": {"phantom": {"subjects": 3, "matrix": list(MATRIX), "spacing": list(SPACING)}, **data},
        # 3 subjects: 3 folds of 1 test subject, no validation subject, pool of 2
        "splits": {"folds": 3, "sizes": [2], "validation_subjects": 0},
    }
    return merge(load_yaml(REPO / "config.yaml"), overrides)


def synthrad_config(root: Path, labels_table: Path | None | str = "default", **data) -> dict:
    if labels_table == "default":
        labels_table = root.parent / "labels.tsv"
    return validate_config(
        base_config(
            source="synthrad", synthrad_dir=str(root), labels_table=str(labels_table) if labels_table else None, **data
        )
    )


def sheet_config(sheet: Path, labels_table: Path | None = None, **data) -> dict:
    return validate_config(
        base_config(source="sheet", sheet=str(sheet), labels_table=str(labels_table) if labels_table else None, **data)
    )


def write_sheet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def sheet_rows(prefix: str = "") -> list[dict]:
    return [{"subject": s, **{m: f"{prefix}{s}/{m}.nii.gz" for m in MODALITIES}} for s in SUBJECTS]


def write_nifti(
    path: Path, data: np.ndarray, affine: np.ndarray, slope: float | None = None, inter: float | None = None
) -> Path:
    """Write with nibabel directly (sform and qform set, optional raw scale factors)."""
    image = nib.Nifti1Image(np.asarray(data), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    if slope is not None or inter is not None:
        image.header.set_slope_inter(1.0 if slope is None else slope, 0.0 if inter is None else inter)
    nib.save(image, str(path))
    return path


def load_disk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Scaled voxel values in on-disk order, and the affine, as nibabel sees them."""
    image = nib.load(str(path))
    return np.asarray(image.get_fdata()), image.affine


def raw_header(path: Path) -> nib.Nifti1Header:
    """The header as stored (scale factors included), not nibabel's in-memory view."""
    raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    return nib.Nifti1Header.from_fileobj(io.BytesIO(raw[:348]))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


def validation_report(config: dict, out: Path, results: str) -> Path:
    """The validate_cohort job on the cohort a config describes (its files, label table and checks)."""
    cohort = cohort_from_config(config, results)
    data = config["data"]
    return write_validation_report(
        cohort.files_by_subject(), cohort.labels_table, out, data["geometry_tolerance_mm"], data.get("checks") or {}
    )


def expect_report_failure(config: dict, tmp_path: Path, *fragments: str, results: Path | None = None) -> str:
    """``write_validation_report`` raises an InputError containing every fragment and writes nothing."""
    report_dir = tmp_path / "report"
    report_dir.mkdir(exist_ok=True)
    out = report_dir / "validation.tsv"
    with pytest.raises(InputError) as info:
        validation_report(config, out, str(results or tmp_path / "results"))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in error message:\n{message}"
    assert not out.exists()
    assert list(report_dir.iterdir()) == [], "no partial or temporary report may be left behind"
    return message


def report(config: dict, tmp_path: Path, results: Path | None = None) -> pd.DataFrame:
    out = tmp_path / "report" / "validation.tsv"
    validation_report(config, out, str(results or tmp_path / "results"))
    return pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)


def lps(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same physical image with the first two voxel axes flipped (RAS on disk → LPS on disk)."""
    nx, ny = data.shape[:2]
    flip = np.array([[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    return np.ascontiguousarray(data[::-1, ::-1]), affine @ flip


# --------------------------------------------------------------------------- #
# 1. every source gives the same validated cohort
# --------------------------------------------------------------------------- #
def test_phantom_synthrad_and_sheet_sources_give_the_same_validated_cohort(
    tmp_path, phantom_results, synthrad, cohort_dir
):
    phantom = validate_config(base_config(source="phantom"))
    phantom_cohort = cohort_from_config(phantom, phantom_results)
    assert phantom_cohort.generated and phantom_cohort.ids == SUBJECTS

    synth = synthrad_config(synthrad)
    synth_cohort = cohort_from_config(synth)
    assert synth_cohort.ids == SUBJECTS
    assert all(s.labels is not None for s in synth_cohort.subjects)

    sheet_root = tmp_path / "sheet"
    for subject in SUBJECTS:
        shutil.copytree(cohort_dir / subject, sheet_root / "images" / subject)
    sheet = write_sheet(sheet_root / "samples.tsv", sheet_rows("images/"))
    sheet_cfg = sheet_config(sheet, labels_table=tmp_path / "labels.tsv")
    sheet_cohort = cohort_from_config(sheet_cfg)
    assert sheet_cohort.ids == SUBJECTS
    assert sheet_cohort["phantom002"].ct == (sheet_root / "images" / "phantom002" / "ct.nii.gz").resolve()

    tables = {}
    reports = {}
    for name, config, results in (
        ("phantom", phantom, phantom_results),
        ("synthrad", synth, None),
        ("sheet", sheet_cfg, None),
    ):
        out = tmp_path / "reports" / f"{name}.tsv"
        validation_report(config, out, str(results or tmp_path / "results"))
        reports[name] = out.read_bytes()
        tables[name] = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)

    expected = tables["phantom"]
    assert expected["subject"].tolist() == SUBJECTS
    assert set(expected["shape"].str.split("x").str[:2].map(tuple)) == {(str(MATRIX[0]), str(MATRIX[1]))}
    assert (expected["spacing_mm"] == "4,4,6").all()
    assert (expected["orientation"] == "RAS").all()
    assert (expected["ct_min_hu"].astype(float) == -1024).all()
    assert (expected["ct_max_hu"].astype(float) > 900).all()  # cortical bone
    assert set(expected["labels"].iloc[0].split(",")) <= {str(i) for i in LABELS}
    for name in ("synthrad", "sheet"):
        pd.testing.assert_frame_equal(tables[name], expected, obj=f"{name} validation table")
        assert reports[name] == reports["phantom"]
    # the in-memory API agrees with the report
    pd.testing.assert_frame_equal(validate_cohort(sheet_cohort).astype(str), expected, check_dtype=False)


def test_generated_subjects_tsv_is_itself_a_valid_sample_sheet(tmp_path, cohort_dir):
    """The phantom writer's subjects.tsv (extra parameter columns) is accepted as a sheet."""
    root = tmp_path / "cohort"
    shutil.copytree(cohort_dir, root)
    table = report(sheet_config(root / "subjects.tsv", labels_table=root / "labels.tsv"), tmp_path)
    assert table["subject"].tolist() == SUBJECTS


def test_unlabelled_cohort_needs_no_label_table(tmp_path, synthrad):
    for subject in SUBJECTS:
        (synthrad / subject / "labels.nii.gz").unlink()
    cohort = cohort_from_config(synthrad_config(synthrad, labels_table=None))
    assert all(s.labels is None for s in cohort.subjects) and cohort.labels_table is None
    table = report(synthrad_config(synthrad, labels_table=None), tmp_path)
    assert table["subject"].tolist() == SUBJECTS
    assert (table["labels"] == "").all()


def test_cli_validate_accepts_a_good_cohort(tmp_path, synthrad, capsys):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        yaml.safe_dump(
            base_config(source="synthrad", synthrad_dir=str(synthrad), labels_table=str(tmp_path / "labels.tsv"))
        )
    )
    assert cli_main(["validate", "--config", str(config_file), "--results", str(tmp_path / "results")]) == 0
    captured = capsys.readouterr()
    assert "3 subject(s) valid" in captured.out
    for subject in SUBJECTS:
        assert subject in captured.out


def test_cli_validate_phantom_before_generation_only_checks_the_config(tmp_path, capsys):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(base_config(source="phantom")))
    assert cli_main(["validate", "--config", str(config_file), "--results", str(tmp_path / "results")]) == 0
    assert "generated by the workflow" in capsys.readouterr().out


def test_cli_validate_phantom_after_generation_validates_it(tmp_path, phantom_results, capsys):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(base_config(source="phantom")))
    assert cli_main(["validate", "--config", str(config_file), "--results", str(phantom_results)]) == 0
    assert "3 subject(s) valid" in capsys.readouterr().out


# --------------------------------------------------------------------------- #
# 2. re-encodings of the same CT read identically; writes round-trip and are deterministic
# --------------------------------------------------------------------------- #
ENCODINGS = {
    # name: (on-disk orientation, stored dtype, scl_inter)
    "uint16_intercept": ("RAS", np.uint16, -1024.0),
    "float32": ("RAS", np.float32, None),
    "lps": ("LPS", np.int16, None),
    "lps_uint16_intercept": ("LPS", np.uint16, -1024.0),
}


def write_encoding(path: Path, source: Path, name: str) -> Path:
    hu, affine = load_disk(source)
    assert nib.aff2axcodes(affine) == ("R", "A", "S")
    orientation, dtype, inter = ENCODINGS[name]
    if orientation == "LPS":
        hu, affine = lps(hu, affine)
    stored = hu - inter if inter is not None else hu
    if np.issubdtype(dtype, np.integer):
        assert stored.min() >= np.iinfo(dtype).min and stored.max() <= np.iinfo(dtype).max
    write_nifti(path, stored.astype(dtype), affine, slope=1.0 if inter is not None else None, inter=inter)
    # the file really is encoded as intended
    header = raw_header(path)
    assert header.get_data_dtype() == np.dtype(dtype)
    assert nib.aff2axcodes(nib.load(str(path)).affine) == tuple(orientation)
    if inter is not None:
        assert float(header["scl_slope"]) == 1.0 and float(header["scl_inter"]) == inter
    return path


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


# --------------------------------------------------------------------------- #
# 3. one test per validation failure
# --------------------------------------------------------------------------- #
# --- missing files ---------------------------------------------------------- #
def test_sheet_path_that_does_not_exist(tmp_path, cohort_dir):
    root = tmp_path / "sheet"
    for subject in SUBJECTS:
        shutil.copytree(cohort_dir / subject, root / subject)
    rows = sheet_rows()
    rows[1]["ct"] = "phantom002/ct_typo.nii.gz"
    config = sheet_config(write_sheet(root / "samples.tsv", rows), labels_table=cohort_dir / "labels.tsv")
    expect_report_failure(config, tmp_path, "subject 'phantom002'", "ct_typo.nii.gz", "not found", "samples.tsv")


def test_synthrad_subject_missing_ct(tmp_path, synthrad):
    (synthrad / "phantom003" / "ct.nii.gz").unlink()
    config = synthrad_config(synthrad)
    with pytest.raises(InputError, match=r"subject 'phantom003': missing .*phantom003/ct\.nii\.gz"):
        discover_synthrad(synthrad)
    expect_report_failure(config, tmp_path, "phantom003", "missing", "ct.nii.gz")


def test_synthrad_dir_that_does_not_exist(tmp_path):
    config = synthrad_config(tmp_path / "nowhere", labels_table=None)
    expect_report_failure(config, tmp_path, "data.synthrad_dir", "nowhere", "folder not found")


def test_labels_table_that_does_not_exist(tmp_path, synthrad):
    config = synthrad_config(synthrad, labels_table=tmp_path / "labels_typo.tsv")
    expect_report_failure(config, tmp_path, "data.labels_table", "labels_typo.tsv", "not found")


# --- unreadable files ------------------------------------------------------- #
BAD_PAYLOADS = {
    "garbage_bytes": lambda good: np.random.default_rng(0).bytes(4096),
    "png_file": lambda good: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + np.random.default_rng(1).bytes(512),
    "text_file": lambda good: b"this is not an image\n" * 20,
    "gzipped_text": lambda good: gzip.compress(b"subject\tmr\tct\n" * 100),
    "empty_file": lambda good: b"",
}


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


# --- geometry --------------------------------------------------------------- #
def test_mr_ct_shape_mismatch(tmp_path, synthrad):
    path = synthrad / "phantom003" / "mr.nii.gz"
    mr, affine = load_disk(path)
    write_nifti(path, mr[:, :, :-2].astype(np.int16), affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom003'", str(path), "shape", "differs from the CT's"
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


def shift_origin(path: Path, shift_mm: float) -> None:
    data, affine = load_disk(path)
    affine = affine.copy()
    affine[:3, 3] += shift_mm
    write_nifti(path, data.astype(np.int16), affine)


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


def test_label_ids_missing_from_the_volume_table(tmp_path, synthrad):
    path = synthrad / "phantom003" / "labels.nii.gz"
    labels, affine = load_disk(path)
    labels[labels == 12] = 42
    write_nifti(path, labels.astype(np.uint8), affine)
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "subject 'phantom003'", str(path), "[42]", "not in the label table"
    )


def test_label_table_lacking_an_id_present_in_the_volumes(tmp_path, synthrad):
    table = tmp_path / "labels.tsv"
    pd.DataFrame({"id": list(LABELS)[:-1], "name": list(LABELS.values())[:-1]}).to_csv(table, sep="\t", index=False)
    assert 12 not in read_label_table(table)
    message = expect_report_failure(synthrad_config(synthrad), tmp_path, "[12]", "not in the label table")
    assert "3 of 3 subject(s) failed validation" in message  # every phantom subject has a bladder


def test_label_files_present_but_no_label_table(tmp_path, synthrad):
    config = synthrad_config(synthrad, labels_table=None)
    with pytest.raises(InputError, match="data.labels_table"):
        cohort_from_config(config)
    expect_report_failure(config, tmp_path, "label files", "'data.labels_table' is not set")


# --- sample sheet ----------------------------------------------------------- #
@pytest.fixture
def sheet_dir(tmp_path, cohort_dir) -> Path:
    root = tmp_path / "sheet"
    for subject in SUBJECTS:
        shutil.copytree(cohort_dir / subject, root / subject)
    return root


@pytest.mark.parametrize("duplicate", ["phantom001", "phantom001 "], ids=["exact", "trailing_space"])
def test_duplicate_subject_ids_in_a_sheet(tmp_path, sheet_dir, cohort_dir, duplicate):
    rows = sheet_rows()
    rows[2]["subject"] = duplicate  # ids are stripped, so "phantom001 " is phantom001 again
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    with pytest.raises(InputError, match="duplicate subject id"):
        read_sheet(sheet)
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"),
        tmp_path,
        str(sheet),
        "duplicate subject id(s) phantom001",
    )


def test_sheet_missing_a_required_column(tmp_path, sheet_dir, cohort_dir):
    rows = [{k: v for k, v in row.items() if k != "mask"} for row in sheet_rows()]
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"), tmp_path, str(sheet), "lacks column(s) mask"
    )


@pytest.mark.parametrize(
    ("typo", "meant"), [("label", "labels"), ("CT", "ct"), ("Subject", "subject"), ("msk", "mask")]
)
def test_sheet_column_that_is_a_near_miss_of_a_known_column(tmp_path, sheet_dir, cohort_dir, typo, meant):
    rows = [{(typo if k == meant else k): v for k, v in row.items()} for row in sheet_rows()]
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"),
        tmp_path,
        str(sheet),
        f"column '{typo}'",
        f"did you mean '{meant}'",
    )


def test_sheet_extra_columns_are_allowed(tmp_path, sheet_dir, cohort_dir):
    rows = [{**row, "age": "61", "notes": "ok"} for row in sheet_rows()]
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    assert report(sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"), tmp_path)["subject"].tolist() == SUBJECTS


def test_label_table_set_but_subjects_without_labels(tmp_path, sheet_dir, cohort_dir):
    rows = [{k: v for k, v in row.items() if k != "labels"} for row in sheet_rows()]
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"),
        tmp_path,
        "'data.labels_table' is set",
        "3 subject(s) have no label file",
        "phantom001",
    )


@pytest.mark.parametrize("subject", ["{phantom}", "a/b", "two words", ".hidden", "p*1", "ü1"])
def test_subject_id_unusable_as_a_wildcard_value(tmp_path, sheet_dir, cohort_dir, subject):
    rows = sheet_rows()
    rows[1]["subject"] = subject
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"),
        tmp_path,
        str(sheet),
        f"subject id '{subject}' is not usable",
    )


def test_synthrad_folder_name_unusable_as_a_subject_id(tmp_path, synthrad):
    (synthrad / "phantom002").rename(synthrad / "phantom{2}")
    expect_report_failure(
        synthrad_config(synthrad), tmp_path, "data.synthrad_dir", "subject id 'phantom{2}' is not usable"
    )


def test_sheet_symlink_leaving_its_folder_is_called_a_symlink(tmp_path, sheet_dir, cohort_dir):
    outside = tmp_path / "elsewhere"
    shutil.copytree(sheet_dir / "phantom003", outside)
    shutil.rmtree(sheet_dir / "phantom003")
    (sheet_dir / "phantom003").symlink_to(outside, target_is_directory=True)
    sheet = write_sheet(sheet_dir / "samples.tsv", sheet_rows())
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"),
        tmp_path,
        "subject 'phantom003'",
        "symlink",
        str(sheet_dir / "phantom003"),
        "outside the sheet's folder",
    )


def test_sheet_relative_path_escaping_its_folder(tmp_path, sheet_dir, cohort_dir):
    """``../`` leaves the sheet's folder: refused unless data.allow_absolute_paths."""
    nested = sheet_dir / "sheets"
    rows = sheet_rows("../")
    sheet = write_sheet(nested / "samples.tsv", rows)
    config = sheet_config(sheet, labels_table=cohort_dir / "labels.tsv")
    expect_report_failure(
        config,
        tmp_path,
        "subject 'phantom001'",
        "'../phantom001/mr.nii.gz'",
        "leaves the sheet's folder",
        "allow_absolute_paths",
    )
    allowed = sheet_config(sheet, labels_table=cohort_dir / "labels.tsv", allow_absolute_paths=True)
    assert report(allowed, tmp_path)["subject"].tolist() == SUBJECTS


def test_sheet_absolute_path_refused_by_default(tmp_path, sheet_dir, cohort_dir):
    rows = sheet_rows()
    outside = tmp_path / "elsewhere" / "mr.nii.gz"
    outside.parent.mkdir()
    shutil.copy(sheet_dir / "phantom003" / "mr.nii.gz", outside)
    rows[2]["mr"] = str(outside)
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    message = expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"),
        tmp_path,
        "subject 'phantom003'",
        str(outside),
        "leaves the sheet's folder",
    )
    assert "data.allow_absolute_paths" in message
    allowed = sheet_config(sheet, labels_table=cohort_dir / "labels.tsv", allow_absolute_paths=True)
    assert cohort_from_config(allowed)["phantom003"].mr == outside.resolve()
    assert report(allowed, tmp_path)["subject"].tolist() == SUBJECTS


# --- configuration ---------------------------------------------------------- #
@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ({"data": {"sourse": "phantom"}}, ["'data'", "sourse"]),
        ({"seeed": 3}, ["seeed"]),
        ({"splits": {"folds": "three"}}, ["'splits.folds'", "'three'", "integer"]),
        ({"preprocess": {"image_size": 30}}, ["'preprocess.image_size'", "30", "multiple of 4"]),
        ({"splits": {"folds": 1}}, ["'splits.folds'", "minimum of 2"]),
        ({"seed": -1}, ["'seed'", "-1", "minimum of 0"]),
        ({"data": {"source": "synthrad"}}, ["'data.synthrad_dir'", "synthrad"]),
        ({"data": {"source": "sheet"}}, ["'data.sheet'"]),
        ({"data": {"source": "dicom"}}, ["'data.source'", "dicom"]),
        ({"preprocess": {"fov_mm": 1.0e6}}, ["'preprocess.fov_mm'", "maximum"]),
        ({"data": {"phantom": {"spacing": [1.0, 1.0, 2500.0]}}}, ["'data.phantom.spacing[2]'", "maximum"]),
        ({"data": {"phantom": {"matrix": [448, 100000]}}}, ["'data.phantom.matrix[1]'", "maximum"]),
        ({"preprocess": {"image_size": 8192}}, ["'preprocess.image_size'", "maximum"]),
        ({"evaluation": {"boundary_band_mm": 5000}}, ["'evaluation.boundary_band_mm'", "maximum"]),
        ({"data": {"geometry_tolerance_mm": 100}}, ["'data.geometry_tolerance_mm'", "maximum"]),
        (
            {"preprocess": {"image_size": 72}, "train": {"n_downsampling": 4}},
            ["'preprocess.image_size'", "2^train.n_downsampling = 16"],
        ),
    ],
    ids=[
        "unknown_nested_key",
        "unknown_top_key",
        "wrong_type",
        "image_size_not_div4",
        "one_fold",
        "negative_seed",
        "synthrad_without_dir",
        "sheet_without_sheet",
        "unknown_source",
        "fov_of_a_kilometre",
        "slice_of_2.5_m",
        "huge_matrix",
        "huge_image_size",
        "huge_band",
        "huge_tolerance",
        "image_size_not_divisible_by_stages",
    ],
)
def test_invalid_config_names_the_key(tmp_path, override, fragments):
    with pytest.raises(InputError) as info:
        validate_config(merge(base_config(), override))
    for fragment in fragments:
        assert fragment in str(info.value)
    # the same from a file
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(merge(base_config(), override)))
    with pytest.raises(InputError) as info:
        load_config(path)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_sizes_larger_than_the_training_pool():
    ids = [f"s{i:02d}" for i in range(12)]
    config = validate_config(merge(base_config(), {"splits": {"folds": 3, "sizes": [2, 8], "validation_subjects": 1}}))
    with pytest.raises(InputError) as info:
        splits_from_config(ids, config)
    message = str(info.value)
    assert "'splits.sizes'" in message and "[8]" in message
    assert "7 subjects are available" in message  # 12 − 4 test − 1 validation


def test_more_folds_than_subjects(synthrad):
    config = synthrad_config(synthrad)
    config["splits"]["folds"] = 5
    config = validate_config(config)
    with pytest.raises(InputError, match=r"'splits.folds': 5 folds but only 3 subjects"):
        splits_from_config(cohort_from_config(config).ids, config)


# --- through the command line ---------------------------------------------- #
def run_cli_validate(tmp_path: Path, config: dict, *extra: str, capsys) -> tuple[int, str]:
    path = tmp_path / "cli_config.yaml"
    path.write_text(yaml.safe_dump(config))
    code = cli_main(["validate", "--config", str(path), "--results", str(tmp_path / "results"), *extra])
    captured = capsys.readouterr()
    return code, captured.err


def test_cli_unknown_config_key(tmp_path, capsys):
    code, err = run_cli_validate(tmp_path, merge(base_config(), {"data": {"sourse": "phantom"}}), capsys=capsys)
    assert code == 2
    assert "mr2ct validate: error" in err and "sourse" in err


def test_cli_corrupt_subject_file(tmp_path, synthrad, capsys):
    path = synthrad / "phantom002" / "ct.nii.gz"
    path.write_bytes(b"\x1f\x8b" + b"\0" * 100)  # a gzip magic number and nothing valid after it
    config = base_config(source="synthrad", synthrad_dir=str(synthrad), labels_table=str(tmp_path / "labels.tsv"))
    code, err = run_cli_validate(tmp_path, config, capsys=capsys)
    assert code == 2
    assert "phantom002" in err and str(path) in err and "not a readable NIfTI" in err


@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        ("splits.sizes=[2, 20]", ["'splits.sizes'", "[20]", "available"]),
        ("splits.folds=three", ["'splits.folds'", "three"]),
        ("splits.folds=4", ["4 folds but only 3 subjects"]),
        ("data.sourse=sheet", ["sourse"]),
        ("nonsense", ["--set expects KEY=VALUE"]),
    ],
)
def test_cli_set_overrides_are_validated(tmp_path, synthrad, capsys, setting, fragments):
    config = base_config(source="synthrad", synthrad_dir=str(synthrad), labels_table=str(tmp_path / "labels.tsv"))
    code, err = run_cli_validate(tmp_path, config, "--set", setting, capsys=capsys)
    assert code == 2
    for fragment in fragments:
        assert fragment in err


def test_cli_subprocess_exit_code_and_stderr(tmp_path, synthrad):
    (synthrad / "phantom001" / "mask.nii.gz").unlink()
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            base_config(source="synthrad", synthrad_dir=str(synthrad), labels_table=str(tmp_path / "labels.tsv"))
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "mr2ct.cli", "validate", "--config", str(path), "--results", str(tmp_path / "results")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "subject 'phantom001'" in proc.stderr and "mask.nii.gz" in proc.stderr
    assert proc.stdout == ""


# --------------------------------------------------------------------------- #
# 4. all errors of a cohort are reported together
# --------------------------------------------------------------------------- #
def test_all_broken_subjects_are_listed_in_one_error(tmp_path, synthrad):
    mask, affine = load_disk(synthrad / "phantom001" / "mask.nii.gz")
    write_nifti(synthrad / "phantom001" / "mask.nii.gz", np.zeros_like(mask, dtype=np.uint8), affine)
    mr, affine = load_disk(synthrad / "phantom003" / "mr.nii.gz")
    mr = mr.astype(np.float32)
    mr[5, 5, 5] = np.nan
    write_nifti(synthrad / "phantom003" / "mr.nii.gz", mr, affine)
    message = expect_report_failure(
        synthrad_config(synthrad),
        tmp_path,
        "2 of 3 subject(s) failed validation",
        "subject 'phantom001'",
        "mask is empty",
        "subject 'phantom003'",
        "NaN or infinite",
    )
    assert "phantom002" not in message
    with pytest.raises(InputError) as info:
        validate_cohort(cohort_from_config(synthrad_config(synthrad)))
    assert str(info.value) == message


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path):
    from mr2ct.io import atomic_path

    target = tmp_path / "table.csv"
    atomic_write_text(target, "old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]  # no temporary file left


def test_atomic_write_gives_normal_file_permissions(tmp_path):
    from mr2ct import io as mio

    target = atomic_write_text(tmp_path / "shared.txt", "x")
    assert target.stat().st_mode & 0o777 == 0o666 & ~mio._UMASK
