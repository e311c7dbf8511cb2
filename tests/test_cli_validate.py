"""`mr2ct validate` and the config checks it shares with the workflow's parse: invalid keys,
sizes and folds the cohort cannot hold, exit codes and stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from mr2ct.config import load_config, merge, validate_config
from mr2ct.data.cohort import cohort_from_config
from mr2ct.data.io import InputError
from mr2ct.data.splits import splits_from_config

from .ingestion_support import REPO, base_config, run_cli_validate, synthrad_config


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
