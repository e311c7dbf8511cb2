"""Cohort discovery: the phantom, SynthRAD folders and sample sheets give the same validated cohort;
missing files, label tables and sheet errors are refused with the subject or file named.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from mr2ct.cli import main as cli_main
from mr2ct.config import validate_config
from mr2ct.data.cohort import cohort_from_config, discover_synthrad, read_label_table, read_sheet
from mr2ct.data.io import InputError
from mr2ct.data.phantom import LABELS
from mr2ct.data.validation import validate_cohort

from .ingestion_support import (
    MATRIX,
    SUBJECTS,
    base_config,
    expect_report_failure,
    load_disk,
    report,
    sheet_config,
    sheet_rows,
    synthrad_config,
    validation_report,
    write_nifti,
    write_sheet,
)


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
    rows = [{k: v for k, v in row.items() if k != "ct"} for row in sheet_rows()]
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    expect_report_failure(
        sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"), tmp_path, str(sheet), "lacks column(s) ct"
    )


@pytest.mark.parametrize("how", ["no_column", "empty_cells"])
def test_a_sheet_without_masks_has_them_derived_from_the_ct(sheet_dir, cohort_dir, how):
    rows = [
        {k: ("" if k == "mask" else v) for k, v in row.items() if how == "empty_cells" or k != "mask"}
        for row in sheet_rows()
    ]
    sheet = write_sheet(sheet_dir / "samples.tsv", rows)
    cohort = cohort_from_config(sheet_config(sheet, labels_table=cohort_dir / "labels.tsv"), "out")
    assert [str(s.mask) for s in cohort.subjects] == [f"out/cohort/{s}/mask.nii.gz" for s in cohort.ids]
    assert all(cohort.preparation[s].derives_mask and not cohort.preparation[s].dicom for s in cohort.ids)
    assert all(cohort[s].ct == (sheet_dir / f"{s}/ct.nii.gz").resolve() for s in cohort.ids)  # the CT as given


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
