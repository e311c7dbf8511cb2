"""A cohort as it leaves the scanner, judged when the workflow is parsed: sample-sheet cells naming
DICOM series folders, masks left out, data.registration; what is refused names the folder or key."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mr2ct.data.cohort import DicomSeries, cohort_from_config
from mr2ct.data.io import InputError, read_volume
from mr2ct.data.registration import to_sitk
from mr2ct.data.validation import validate_changed, validate_cohort

from .dicom_support import image_to_series
from .ingestion_support import SUBJECTS, base_config, cohort_dir, phantom_results, sheet_config  # noqa: F401


@pytest.fixture
def scanner_sheet(tmp_path, cohort_dir):  # noqa: F811
    """phantom001's CT as a DICOM series, its MR a NIfTI file, no mask column; the others as NIfTI files."""
    root = tmp_path / "cohort"
    rows = ["subject\tmr\tct\tlabels"]
    for subject in SUBJECTS:
        shutil.copytree(cohort_dir / subject, root / subject)
        ct = f"{subject}/ct.nii.gz"
        if subject == "phantom001":
            image_to_series(
                root / subject / "ct_series", to_sitk(read_volume(cohort_dir / subject / "ct.nii.gz")), "CT"
            )
            ct = f"{subject}/ct_series"
        rows.append(f"{subject}\t{subject}/mr.nii.gz\t{ct}\t{subject}/labels.nii.gz")
    shutil.copy(cohort_dir / "labels.tsv", root / "labels.tsv")
    (root / "sheet.tsv").write_text("\n".join(rows) + "\n")
    return root


def _config(root: Path, **data):
    return sheet_config(root / "sheet.tsv", labels_table=root / "labels.tsv", **data)


def test_the_sheet_names_what_jobs_will_make_and_the_parse_judges_what_is_given(scanner_sheet, tmp_path):
    cohort = cohort_from_config(_config(scanner_sheet, registration="affine"), "res")
    first = cohort.preparation["phantom001"]
    assert first.dicom == {"ct": DicomSeries((scanner_sheet / "phantom001/ct_series").resolve())}
    assert first.derives_mask and first.registration == "affine"
    assert cohort["phantom001"].ct == Path("res/cohort/phantom001/ct.nii.gz")
    assert cohort["phantom002"].mr == Path("res/registration/phantom002/mr.nii.gz")
    assert first.unregistered_mr == (scanner_sheet / "phantom001/mr.nii.gz").resolve()
    assert validate_changed(cohort, 0.01, tmp_path / "cache.json", progress=False) == 3
    assert validate_changed(cohort, 0.01, tmp_path / "cache.json", progress=False) == 0  # nothing changed
    table = validate_cohort(cohort)  # `mr2ct validate` before the workflow ran: what is to be done
    assert "MR registered to the CT (affine)" in table.set_index("subject").loc["phantom001", "to_prepare"]


def test_a_nan_in_a_given_mr_is_refused_at_parse_even_when_it_is_to_be_registered(scanner_sheet, tmp_path):
    import nibabel as nib

    path = scanner_sheet / "phantom002/mr.nii.gz"
    image = nib.load(path)
    data = image.get_fdata().astype(np.float32)
    data[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(data, image.affine), path)
    with pytest.raises(InputError, match=r"subject 'phantom002'.*mr\.nii\.gz.*NaN"):
        validate_changed(cohort_from_config(_config(scanner_sheet, registration="rigid")), 0.01, tmp_path / "c.json")


def test_a_folder_of_two_series_is_refused_at_parse_listing_them_until_the_sheet_names_one(scanner_sheet, tmp_path):
    folder = scanner_sheet / "phantom001/ct_series"
    ct = to_sitk(read_volume(scanner_sheet / "phantom001/ct.nii.gz"))
    second = image_to_series(tmp_path / "other", ct, "CT", seed=5)
    for path in (tmp_path / "other").iterdir():
        shutil.move(path, folder / f"b{path.name}")
    config = _config(scanner_sheet)
    with pytest.raises(InputError) as error:
        validate_changed(cohort_from_config(config), 0.01, tmp_path / "cache.json", progress=False)
    assert str(folder) in str(error.value) and second in str(error.value) and "2 DICOM series" in str(error.value)
    sheet = scanner_sheet / "sheet.tsv"
    sheet.write_text(sheet.read_text().replace("phantom001/ct_series", f"phantom001/ct_series#{second}"))
    cohort = cohort_from_config(config)
    assert cohort.preparation["phantom001"].dicom["ct"].uid == second
    validate_changed(cohort, 0.01, tmp_path / "cache.json", progress=False)


def test_a_missing_slice_is_refused_at_parse_naming_the_folder(scanner_sheet, tmp_path):
    folder = scanner_sheet / "phantom001/ct_series"
    import pydicom

    slices = sorted(folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    slices[len(slices) // 2].unlink()
    with pytest.raises(InputError, match=rf"{folder}.*slice\(s\) missing"):
        validate_changed(cohort_from_config(_config(scanner_sheet)), 0.01, tmp_path / "cache.json", progress=False)


def test_one_series_serving_two_subjects_is_refused(scanner_sheet):
    sheet = scanner_sheet / "sheet.tsv"
    sheet.write_text(sheet.read_text().replace("phantom002/ct.nii.gz", "phantom001/ct_series"))
    with pytest.raises(InputError, match="subject 'phantom002' uses the files of subject 'phantom001'.*ct_series"):
        cohort_from_config(_config(scanner_sheet))


def test_a_nifti_file_whose_name_holds_a_hash_stays_a_file(scanner_sheet):
    (scanner_sheet / "phantom003/ct.nii.gz").rename(scanner_sheet / "phantom003/ct#1.nii.gz")
    sheet = scanner_sheet / "sheet.tsv"
    sheet.write_text(sheet.read_text().replace("phantom003/ct.nii.gz", "phantom003/ct#1.nii.gz"))
    cohort = cohort_from_config(_config(scanner_sheet))
    assert cohort["phantom003"].ct == (scanner_sheet / "phantom003/ct#1.nii.gz").resolve()


def test_an_unknown_registration_method_is_refused_naming_the_key():
    from mr2ct.config import validate_config

    with pytest.raises(Exception, match="data.registration"):
        validate_config(base_config(registration="elastic"))


def test_a_subject_judged_for_registration_is_judged_again_in_full_when_registration_is_turned_off(
    scanner_sheet, tmp_path
):
    import nibabel as nib

    path = scanner_sheet / "phantom002/mr.nii.gz"
    image = nib.load(path)
    nib.save(nib.Nifti1Image(image.get_fdata().astype(np.float32)[:, :, 1:], image.affine), path)  # its own grid
    sheet = scanner_sheet / "sheet.tsv"  # with its mask: once registration is off, nothing of it is prepared
    lines = sheet.read_text().splitlines()
    masks = ["mask", *(f"{line.split()[0]}/mask.nii.gz" for line in lines[1:])]
    sheet.write_text("".join(f"{line}\t{mask}\n" for line, mask in zip(lines, masks)))
    cache = tmp_path / "cache.json"
    validate_changed(cohort_from_config(_config(scanner_sheet, registration="rigid")), 0.01, cache, progress=False)
    with pytest.raises(InputError, match=r"subject 'phantom002'.*differs from the CT's.*data.registration: rigid"):
        validate_changed(cohort_from_config(_config(scanner_sheet, registration="none")), 0.01, cache, progress=False)
