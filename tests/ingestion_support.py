"""Shared by the cohort, I/O, validation and `mr2ct validate` tests: one small phantom cohort per
session (read-only; every test copies what it changes) and writers of broken inputs. Broken
inputs are written with nibabel directly, not with our writer, so the reader is tested against
files it did not make.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from mr2ct.cli import main as cli_main
from mr2ct.config import load_yaml, merge, validate_config
from mr2ct.data.cohort import cohort_from_config
from mr2ct.data.io import InputError
from mr2ct.data.phantom import PhantomSettings, write_cohort
from mr2ct.data.validation import write_validation_report

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


def copy_as_synthrad(cohort: Path, subjects: list[str], tmp_path: Path) -> Path:
    """A private SynthRAD-style copy of a phantom cohort folder: ``<tmp>/synthrad/<subject>/{mr,ct,mask,
    labels}.nii.gz`` and ``<tmp>/labels.tsv``; returns the root."""
    root = tmp_path / "synthrad"
    for subject in subjects:
        shutil.copytree(cohort / subject, root / subject)
    shutil.copy(cohort / "labels.tsv", tmp_path / "labels.tsv")
    return root


@pytest.fixture
def synthrad(tmp_path, cohort_dir) -> Path:
    """A private SynthRAD-style copy of the 3-subject cohort."""
    return copy_as_synthrad(cohort_dir, SUBJECTS, tmp_path)


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


# --- unreadable files ------------------------------------------------------- #
BAD_PAYLOADS = {
    "garbage_bytes": lambda good: np.random.default_rng(0).bytes(4096),
    "png_file": lambda good: b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + np.random.default_rng(1).bytes(512),
    "text_file": lambda good: b"this is not an image\n" * 20,
    "gzipped_text": lambda good: gzip.compress(b"subject\tmr\tct\n" * 100),
    "empty_file": lambda good: b"",
}


def shift_origin(path: Path, shift_mm: float) -> None:
    data, affine = load_disk(path)
    affine = affine.copy()
    affine[:3, 3] += shift_mm
    write_nifti(path, data.astype(np.int16), affine)


# --- sample sheet ----------------------------------------------------------- #
@pytest.fixture
def sheet_dir(tmp_path, cohort_dir) -> Path:
    root = tmp_path / "sheet"
    for subject in SUBJECTS:
        shutil.copytree(cohort_dir / subject, root / subject)
    return root


# --- through the command line ---------------------------------------------- #
def run_cli_validate(tmp_path: Path, config: dict, *extra: str, capsys) -> tuple[int, str]:
    path = tmp_path / "cli_config.yaml"
    path.write_text(yaml.safe_dump(config))
    code = cli_main(["validate", "--config", str(path), "--results", str(tmp_path / "results"), *extra])
    captured = capsys.readouterr()
    return code, captured.err
