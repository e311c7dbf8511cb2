"""Hostile or careless input data, refused before any job with the subject, file or key named.

Four classes of the data itself (the configuration has tests/test_config_hostile.py):

3. identity: one file or one scan's content serving two subjects or two roles; subject ids
   that collide under case folding, when read as numbers or as missing values; ids too long
   for file names; ids that must survive a table round trip as written;
4. integrity: damaged gzip streams, complex, colour or multi-component voxels, CT not in
   Hounsfield units, voxel sizes in another unit, qform/sform missing or disagreeing, a zero
   voxel size, a volume too thin to be a cohort volume;
5. plausibility of masks and labels: a mask that misses the body, an empty label map, one
   outside the body or on a few slices;
7. SynthRAD folders that would otherwise be dropped silently.

Every refusal is checked through both code paths: ``mr2ct validate`` (the command line) and the
workflow's parse (``cohort_from_config`` + ``validate_changed``, as rules/common.smk runs it),
which must give the same verdict, one readable error without a traceback, and leave every
result file untouched. The defaults of ``data.checks`` are tested against the phantom and
against real CT and MR scans shipped with pydicom.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
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
from mr2ct.data.splits import splits_from_config
from mr2ct.data.validation import validate_changed, validate_cohort

from .conftest import ROOT
from .ingestion_support import copy_as_synthrad

ROLES = ("mr", "ct", "mask", "labels")


# --------------------------------------------------------------------------- #
# helpers: a private copy of the tiny phantom cohort, both verdicts
# --------------------------------------------------------------------------- #
@pytest.fixture
def subjects(tiny_cohort) -> list[str]:
    return sorted(p.name for p in tiny_cohort.iterdir() if p.is_dir())


@pytest.fixture
def synthrad(tmp_path, tiny_cohort, subjects) -> Path:
    """``<tmp>/synthrad/<subject>/{mr,ct,mask,labels}.nii.gz`` and ``<tmp>/labels.tsv``."""
    return copy_as_synthrad(tiny_cohort, subjects, tmp_path)


def overlay(**data) -> dict:
    """config.yaml with the tiny phantom's settings and ``data`` overrides (not validated)."""
    return merge(
        load_yaml(ROOT / "config.yaml"),
        {
            "seed": 7,
            "data": {"phantom": {"subjects": 4, "matrix": [112, 80], "spacing": [4.0, 4.0, 6.0]}, **data},
            "splits": {"folds": 2, "sizes": [2], "validation_subjects": 0},
        },
    )


def synthrad_config(root: Path, labels: bool = True, **data) -> dict:
    table = str(root.parent / "labels.tsv") if labels else None
    return overlay(source="synthrad", synthrad_dir=str(root), labels_table=table, **data)


def unlabelled(root: Path) -> Path:
    for labels in root.glob("*/labels.nii.gz"):
        labels.unlink()
    return root


def write_sheet(root: Path, rows: list[dict], labels: bool = True) -> dict:
    pd.DataFrame(rows).to_csv(root / "samples.tsv", sep="\t", index=False)
    table = str(root.parent / "labels.tsv") if labels else None
    return overlay(source="sheet", sheet=str(root / "samples.tsv"), labels_table=table)


def rows_for(subjects: list[str], ids: list[str] | None = None) -> list[dict]:
    return [{"subject": i, **{r: f"{s}/{r}.nii.gz" for r in ROLES}} for i, s in zip(ids or subjects, subjects)]


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Stored voxel values (unscaled, on-disk order) and the affine."""
    image = nib.load(str(path))
    return np.asarray(image.dataobj), image.affine


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Write with nibabel directly (sform and qform set, scanner coordinates)."""
    image = nib.Nifti1Image(np.asarray(data), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))
    return path


def edit(path: Path, change) -> Path:
    data, affine = load(path)
    return save(path, change(data.copy()), affine)


def cli_verdict(config: dict, tmp_path: Path) -> tuple[int, str]:
    path = tmp_path / "verdict_config.yaml"
    path.write_text(yaml.safe_dump(config))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["validate", "--config", str(path), "--results", str(tmp_path / "results")])
    return code, err.getvalue()


def parse_verdict(config: dict, tmp_path: Path, cache: Path | None = None) -> str | None:
    """What the workflow's parse does (rules/common.smk): None when it passes, else the error."""
    try:
        effective = validate_config(merge(load_yaml(ROOT / "config.yaml"), config))
        cohort = cohort_from_config(effective, str(tmp_path / "results"))
        if not cohort.generated:
            validate_changed(
                cohort,
                effective["data"]["geometry_tolerance_mm"],
                cache or tmp_path / ".snakemake" / "validated_subjects.json",
                progress=False,
            )
        splits_from_config(cohort.ids, effective)
    except InputError as exc:
        return str(exc)
    return None


@pytest.fixture
def results(tmp_path) -> Path:
    """A results folder with a finished table in it, which no refused input may touch."""
    table = tmp_path / "results" / "tables" / "synthesis_metrics.csv"
    table.parent.mkdir(parents=True)
    table.write_text("subject,mae\nphantom001,80.5\n")
    return tmp_path / "results"


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def refused(config: dict, tmp_path: Path, *fragments: str) -> str:
    """Both ``mr2ct validate`` and the workflow's parse refuse ``config`` with every fragment in one readable
    error (no traceback), name the same failing subjects, and leave the results folder untouched."""
    results = tmp_path / "results"
    before = tree(results) if results.exists() else {}
    code, cli = cli_verdict(config, tmp_path)
    parse = parse_verdict(config, tmp_path)
    assert code == 2, f"mr2ct validate accepted it:\n{cli}"
    assert parse is not None, "the workflow's parse accepted it"
    assert "mr2ct validate: error: " in cli
    for text in (cli, parse):
        assert "Traceback" not in text
        for fragment in fragments:
            assert fragment in text, f"{fragment!r} not in:\n{text}"
    cli_text = cli.split("mr2ct validate: error: ", 1)[1]
    subject_lines = {line.strip() for line in cli_text.splitlines() if line.strip().startswith("subject '")}
    assert subject_lines == {line.strip() for line in parse.splitlines() if line.strip().startswith("subject '")}
    assert (tree(results) if results.exists() else {}) == before, "a refused input touched the results"
    return parse


def accepted(config: dict, tmp_path: Path) -> None:
    code, cli = cli_verdict(config, tmp_path)
    assert code == 0, cli
    assert parse_verdict(config, tmp_path) is None


# --------------------------------------------------------------------------- #
# 3. identity of the data
# --------------------------------------------------------------------------- #
def test_two_sheet_rows_naming_the_same_files(tmp_path, synthrad, subjects, results):
    rows = rows_for(subjects)
    rows[2].update({r: f"{subjects[0]}/{r}.nii.gz" for r in ROLES})
    refused(
        write_sheet(synthrad, rows),
        tmp_path,
        f"subject '{subjects[2]}' uses the files of subject '{subjects[0]}'",
        "mr, ct, mask, labels",
        "both name",
    )


@pytest.mark.parametrize("link", ["symlinked_folder", "hard_links"])
def test_a_subject_folder_linked_to_another(tmp_path, synthrad, subjects, results, link):
    copy = synthrad / subjects[3]
    shutil.rmtree(copy)
    if link == "symlinked_folder":
        copy.symlink_to(synthrad / subjects[0], target_is_directory=True)
    else:
        copy.mkdir()
        for role in ROLES:
            os.link(synthrad / subjects[0] / f"{role}.nii.gz", copy / f"{role}.nii.gz")
    refused(
        synthrad_config(synthrad),
        tmp_path,
        f"subject '{subjects[3]}' uses the files of subject '{subjects[0]}'",
        "are one file (a link)",
    )


def test_a_copied_subject_folder(tmp_path, synthrad, subjects, results):
    shutil.rmtree(synthrad / subjects[3])
    shutil.copytree(synthrad / subjects[1], synthrad / subjects[3])
    message = refused(
        synthrad_config(synthrad),
        tmp_path,
        f"subject '{subjects[3]}': its mr, ct, mask, labels have the same bytes",
        f"subject '{subjects[1]}'",
        "one scan cannot serve two subjects",
    )
    assert "1 of 4 subject(s) failed validation" in message


def test_a_copied_subject_reencoded_has_the_same_voxels(tmp_path, synthrad, subjects, results):
    """float32 instead of int16: other bytes, the same scan."""
    shutil.rmtree(synthrad / subjects[3])
    shutil.copytree(synthrad / subjects[0], synthrad / subjects[3])
    for role in ("mr", "ct"):
        edit(synthrad / subjects[3] / f"{role}.nii.gz", lambda d: d.astype(np.float32))
    refused(
        synthrad_config(synthrad),
        tmp_path,
        f"subject '{subjects[3]}': its mr, ct",
        "the same voxel values as those of subject",
        f"'{subjects[0]}'",
    )


def test_the_same_file_as_mr_and_ct_in_a_sheet(tmp_path, synthrad, subjects, results):
    rows = rows_for(subjects)
    rows[1]["mr"] = rows[1]["ct"]
    refused(write_sheet(synthrad, rows), tmp_path, f"subject '{subjects[1]}': its mr and ct are the same file")


def test_mr_that_is_a_copy_of_the_ct(tmp_path, synthrad, subjects, results):
    folder = synthrad / subjects[1]
    shutil.copy(folder / "ct.nii.gz", folder / "mr.nii.gz")
    refused(
        synthrad_config(synthrad),
        tmp_path,
        f"subject '{subjects[1]}'",
        "its ct has the same bytes (SHA-256) as its mr",
        str(folder / "mr.nii.gz"),
    )


def test_labels_that_are_the_body_mask(tmp_path, synthrad, subjects, results):
    folder = synthrad / subjects[2]
    mask, affine = load(folder / "mask.nii.gz")
    save(folder / "labels.nii.gz", mask.astype(np.int16), affine)  # other bytes, same voxels
    refused(synthrad_config(synthrad), tmp_path, f"subject '{subjects[2]}'", "its labels has the same voxel values")


def test_a_copy_is_found_by_the_parse_when_only_the_copy_changed(tmp_path, synthrad, subjects, results, tiny_cohort):
    """The workflow re-reads only changed subjects: the others' digests come from its cache."""
    cache = tmp_path / "cache.json"
    config = synthrad_config(synthrad)
    assert parse_verdict(config, tmp_path, cache) is None
    shutil.rmtree(synthrad / subjects[3])
    shutil.copytree(synthrad / subjects[0], synthrad / subjects[3])
    message = parse_verdict(config, tmp_path, cache)
    assert message and f"subject '{subjects[3]}'" in message and f"subject '{subjects[0]}'" in message
    assert "same bytes" in message
    # it stays refused (the copy is not remembered as passed) ...
    assert parse_verdict(config, tmp_path, cache) == message
    # ... until the subject has its own files again
    shutil.rmtree(synthrad / subjects[3])
    shutil.copytree(tiny_cohort / subjects[3], synthrad / subjects[3])
    assert parse_verdict(config, tmp_path, cache) is None


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        (["P01", "p01"], "differ only in upper/lower case"),
        (["001", "1"], "are the same number (1)"),
        (["1e3", "1000"], "are the same number (1000)"),
        (["7", "7.0"], "are the same number (7)"),
        (["NA", "None"], "each read as a missing value (NaN)"),
        (["nan", "NULL"], "each read as a missing value (NaN)"),
    ],
)
def test_sheet_ids_that_collide(tmp_path, synthrad, subjects, results, ids, fragment):
    sheet = write_sheet(synthrad, rows_for(subjects, [*ids, *subjects[2:]]))
    refused(sheet, tmp_path, str(synthrad / "samples.tsv"), " and ".join(f"'{i}'" for i in ids), fragment)


def test_synthrad_folders_that_differ_only_in_case(tmp_path, synthrad, subjects, results):
    (synthrad / subjects[3]).rename(synthrad / subjects[0].upper())
    refused(
        synthrad_config(synthrad),
        tmp_path,
        "data.synthrad_dir",
        f"'{subjects[0].upper()}' and '{subjects[0]}' differ only in upper/lower case",
    )


@pytest.mark.parametrize("source", ["sheet", "synthrad"])
def test_a_subject_id_too_long_for_file_names(tmp_path, synthrad, subjects, results, source):
    long_id = "s" * 150
    if source == "sheet":
        config = write_sheet(synthrad, rows_for(subjects, [long_id, *subjects[1:]]))
    else:
        (synthrad / subjects[0]).rename(synthrad / long_id)
        config = synthrad_config(synthrad)
    refused(config, tmp_path, "is 150 characters long", "at most 100")


@pytest.mark.parametrize("missing_like", ["NA", "nan", "None"])
def test_ids_survive_every_table_as_written(tmp_path, synthrad, subjects, missing_like):
    """001 stays 001 (not 1), 1e3 stays 1e3 (not 1000.0), NA/nan/None stay strings (not NaN)."""
    from mr2ct.data.cohort import read_sheet
    from mr2ct.data.io import read_table
    from mr2ct.data.splits import splits_tsv

    from .ingestion_support import validation_report

    ids = ["001", "1e3", missing_like, "0.50"]
    config = write_sheet(synthrad, rows_for(subjects, ids))
    accepted(config, tmp_path)
    effective = validate_config(config)
    assert [s.subject for s in read_sheet(synthrad / "samples.tsv")] == ids
    assert cohort_from_config(effective).ids == ids
    out = validation_report(effective, tmp_path / "validation.tsv", str(tmp_path / "results"))
    assert read_table(out, sep="\t")["subject"].tolist() == ids
    assert pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)["subject"].tolist() == ids
    splits = tmp_path / "splits.tsv"
    splits.write_text(splits_tsv(ids, effective))
    test_subjects = read_table(splits, sep="\t").query("role == 'test'")["subject"]
    assert sorted(test_subjects) == sorted(ids)
    # the cache of the workflow's parse keeps them too
    cache = tmp_path / "cache.json"
    validate_changed(cohort_from_config(effective), 0.01, cache, progress=False)
    assert sorted(json.loads(cache.read_text())["subjects"]) == sorted(ids)


# --------------------------------------------------------------------------- #
# 4. integrity of the data
# --------------------------------------------------------------------------- #
def damage(path: Path, change) -> Path:
    path.write_bytes(bytes(change(bytearray(path.read_bytes()))))
    return path


def flip(offset: int):
    def change(b: bytearray) -> bytearray:
        b[offset] ^= 0x10
        return b

    return change


GZIP_DAMAGE = {
    # name: (change of the .nii.gz bytes, what the error says)
    "crc_in_trailer": (flip(-8), "CRC-32 checksum does not match"),
    "payload_byte": (lambda b: flip(len(b) * 3 // 4)(b), "CRC-32 checksum does not match"),
    "length_in_trailer": (flip(-1), "length recorded at its end does not match"),
    "trailer_cut": (lambda b: b[:-8], "ends before its end-of-stream marker"),
    "trailing_garbage": (lambda b: b + b"not gzip" * 8, "unexpected bytes follow the compressed stream"),
}


@pytest.mark.parametrize("kind", list(GZIP_DAMAGE))
def test_damaged_gzip_stream(tmp_path, synthrad, subjects, results, kind):
    change, fragment = GZIP_DAMAGE[kind]
    path = damage(synthrad / subjects[1] / "ct.nii.gz", change)
    refused(synthrad_config(synthrad), tmp_path, f"subject '{subjects[1]}'", str(path), "gzip stream", fragment)


def test_complex_voxels(tmp_path, synthrad, subjects, results):
    path = edit(synthrad / subjects[0] / "mr.nii.gz", lambda d: (d + 1j * d).astype(np.complex64))
    refused(synthrad_config(synthrad), tmp_path, str(path), "voxels are complex numbers (complex64)", "magnitude")


def test_rgb_voxels(tmp_path, synthrad, subjects, results):
    def rgb(d):
        grey = np.clip(d / max(d.max(), 1) * 255, 0, 255).astype(np.uint8)
        out = np.zeros(d.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        out["R"] = out["G"] = out["B"] = grey
        return out

    path = edit(synthrad / subjects[0] / "mr.nii.gz", rgb)
    refused(synthrad_config(synthrad), tmp_path, str(path), "voxels are RGB colour values", "one real number per voxel")


def test_vector_image_with_three_components(tmp_path, synthrad, subjects, results):
    path = synthrad / subjects[0] / "mr.nii.gz"
    data, affine = load(path)
    image = nib.Nifti1Image(np.stack([data] * 3, axis=-1)[:, :, :, None, :], affine)
    image.header.set_intent("vector")
    nib.save(image, str(path))
    refused(synthrad_config(synthrad), tmp_path, str(path), "expected a 3D image", "3 components per voxel", "vector")


def test_ct_with_the_offset_applied_twice(tmp_path, synthrad, subjects, results):
    path = edit(synthrad / subjects[1] / "ct.nii.gz", lambda d: (d.astype(np.int32) - 1024).astype(np.int16))
    refused(
        synthrad_config(synthrad),
        tmp_path,
        str(path),
        "CT does not look like Hounsfield units",
        "-1024 offset was applied twice",
    )


def test_ct_in_tenths_of_hu(tmp_path, synthrad, subjects, results):
    path = edit(synthrad / subjects[2] / "ct.nii.gz", lambda d: (d.astype(np.int32) * 10).astype(np.int16))
    refused(
        synthrad_config(synthrad),
        tmp_path,
        str(path),
        "CT does not look like Hounsfield units",
        "outside -1100 to 3100 HU",
        "tenths of HU",
    )


def test_ct_stored_zero_based_with_padding(tmp_path, synthrad, subjects, results):
    """Air at 0 and the body at +1000; a padding strip of -1024 hides it from the minimum check."""

    def zero_based(d):
        d = d.astype(np.int32) + 1024
        d[:3] = -1024
        return d.astype(np.int16)

    path = edit(synthrad / subjects[2] / "ct.nii.gz", zero_based)
    refused(synthrad_config(synthrad), tmp_path, str(path), "median 10", "stored 0-based", "scl_inter -1024")


def scale_geometry(root: Path, factor: float, unit: str | None = None) -> None:
    for path in root.glob("*/*.nii.gz"):
        data, affine = load(path)
        scaled = np.vstack([affine[:3] * factor, affine[3:]])
        image = nib.Nifti1Image(data, scaled)
        image.set_sform(scaled, code=1)
        image.set_qform(scaled, code=1)
        if unit:
            image.header.set_xyzt_units(unit, "sec")
        nib.save(image, str(path))


def test_voxel_size_in_metres_labelled_as_mm(tmp_path, synthrad, results):
    scale_geometry(synthrad, 0.001)
    refused(synthrad_config(synthrad), tmp_path, "voxel size [0.004, 0.004, 0.006] mm", "in metres", "min_spacing_mm")


@pytest.mark.parametrize(("unit", "factor", "word"), [("meter", 0.001, "metres"), ("micron", 1000, "micrometres")])
def test_header_unit_that_is_not_mm(tmp_path, synthrad, results, unit, factor, word):
    scale_geometry(synthrad, factor, unit)
    refused(synthrad_config(synthrad), tmp_path, f"the header gives the voxel size in {word} (xyzt_units)")


def test_header_unit_metres_with_mm_values(tmp_path, synthrad, subjects, results):
    path = synthrad / subjects[0] / "ct.nii.gz"
    image = nib.load(str(path))
    image.header.set_xyzt_units("meter", "sec")
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine, image.header), str(path))
    refused(synthrad_config(synthrad), tmp_path, str(path), "in metres (xyzt_units)")


@pytest.mark.parametrize("kind", ["shifted_5mm", "left_right_flipped"])
def test_qform_and_sform_that_disagree(tmp_path, synthrad, subjects, results, kind):
    path = synthrad / subjects[0] / "mr.nii.gz"
    data, affine = load(path)
    if kind == "shifted_5mm":
        qform = affine.copy()
        qform[:3, 3] += 5.0
    else:
        qform = affine @ np.array([[-1, 0, 0, data.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    image = nib.Nifti1Image(data, affine)
    image.set_sform(affine, code=1)
    image.set_qform(qform, code=1)
    nib.save(image, str(path))
    refused(synthrad_config(synthrad), tmp_path, str(path), "qform and sform disagree", "data.geometry_tolerance_mm")


@pytest.mark.parametrize("where", ["sform", "pixdim"])
def test_zero_voxel_size(tmp_path, synthrad, subjects, results, where):
    path = synthrad / subjects[0] / "ct.nii.gz"
    image = nib.load(str(path))
    header = image.header.copy()
    if where == "sform":
        affine = image.affine.copy()
        affine[:, 2] = 0
        header.set_sform(affine, code=1)
        header["qform_code"] = 0
    zeroed = nib.Nifti1Image(np.asarray(image.dataobj), None, header)
    if where == "pixdim":  # the qform's voxel size is pixdim, 0 here: nibabel would quietly make it 1 mm
        zeroed.header.set_sform(None, code=0)
        zeroed.header["pixdim"][1:4] = 0
    nib.save(zeroed, str(path))
    fragment = "voxel size [4.0, 4.0, 0.0] mm" if where == "sform" else "pixdim[1] is 0"
    refused(synthrad_config(synthrad), tmp_path, str(path), fragment)


def test_neither_qform_nor_sform(tmp_path, synthrad, subjects, results):
    path = synthrad / subjects[3] / "labels.nii.gz"
    data, affine = load(path)
    image = nib.Nifti1Image(data, affine)
    image.set_sform(None, code=0)
    image.set_qform(None, code=0)
    nib.save(image, str(path))
    refused(synthrad_config(synthrad), tmp_path, str(path), "neither a qform nor an sform", "left/right")


@pytest.mark.parametrize("slices", [1, 4])
def test_a_volume_too_thin_for_a_cohort(tmp_path, synthrad, subjects, results, slices):
    for role in ROLES:
        edit(synthrad / subjects[1] / f"{role}.nii.gz", lambda d: d[:, :, 10 : 10 + slices])
    refused(synthrad_config(synthrad), tmp_path, f"subject '{subjects[1]}'", f"has {slices} voxel(s) along axis 2")


# --------------------------------------------------------------------------- #
# 5. plausibility of masks and labels
# --------------------------------------------------------------------------- #
def test_a_mask_of_one_side_of_the_body(tmp_path, synthrad, subjects, results):
    def one_side(d):
        d[d.shape[0] // 3 :] = 0
        return d

    path = edit(synthrad / subjects[0] / "mask.nii.gz", one_side)
    refused(synthrad_config(synthrad), tmp_path, str(path), "misses most of the body", "mask_min_tissue_coverage")


def test_a_mask_on_a_few_slices(tmp_path, synthrad, subjects, results):
    def few(d):
        d[:, :, :12] = 0
        d[:, :, 16:] = 0
        return d

    path = edit(synthrad / subjects[0] / "mask.nii.gz", few)
    refused(synthrad_config(synthrad), tmp_path, str(path), "misses most of the body")


def test_an_empty_label_map(tmp_path, synthrad, subjects, results):
    path = edit(synthrad / subjects[1] / "labels.nii.gz", np.zeros_like)
    refused(synthrad_config(synthrad), tmp_path, str(path), "the label map is empty")


def test_labels_outside_the_body(tmp_path, synthrad, subjects, results):
    path = edit(synthrad / subjects[1] / "labels.nii.gz", lambda d: np.roll(d, d.shape[1] // 2, axis=1))
    refused(
        synthrad_config(synthrad), tmp_path, str(path), "lie outside the body mask", "labels_max_outside_mask_fraction"
    )


def test_labels_on_one_slice(tmp_path, synthrad, subjects, results):
    def one(d):
        keep = d[:, :, 15].copy()
        d[:] = 0
        d[:, :, 15] = keep
        return d

    path = edit(synthrad / subjects[1] / "labels.nii.gz", one)
    refused(synthrad_config(synthrad), tmp_path, str(path), "the labels cover 1 of the", "labels_min_slice_fraction")


# --------------------------------------------------------------------------- #
# 7. SynthRAD folders are never dropped silently
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("which", [("mr", "ct", "mask"), ("ct",)], ids=["all", "ct_only"])
def test_synthrad_file_names_in_upper_case(tmp_path, synthrad, subjects, results, which):
    folder = unlabelled(synthrad) / subjects[1]
    for role in which:
        (folder / f"{role}.nii.gz").rename(folder / f"{role.upper()}.nii.gz")
    refused(
        synthrad_config(synthrad, labels=False),
        tmp_path,
        f"subject '{subjects[1]}': missing",
        "found CT.nii.gz",
        "lower-case, gzipped NIfTI name ct.nii.gz",
    )


def test_synthrad_volumes_not_gzipped(tmp_path, synthrad, subjects, results):
    folder = unlabelled(synthrad) / subjects[1]
    for role in ("mr", "ct", "mask"):
        (folder / f"{role}.nii").write_bytes(gzip.decompress((folder / f"{role}.nii.gz").read_bytes()))
        (folder / f"{role}.nii.gz").unlink()
    refused(synthrad_config(synthrad, labels=False), tmp_path, f"subject '{subjects[1]}'", "found mr.nii;")


@pytest.mark.parametrize("which", ["ct", "all", "labels", "folder"])
def test_synthrad_dangling_symlinks(tmp_path, synthrad, subjects, results, which):
    folder = unlabelled(synthrad) / subjects[1]
    gone = tmp_path / "unmounted"
    if which == "folder":
        (synthrad / "phantom999").symlink_to(gone, target_is_directory=True)
        fragment = f"{synthrad / 'phantom999'} is a symlink to {gone}, which does not exist"
    else:
        for role in {"ct": ["ct"], "all": ["mr", "ct", "mask"], "labels": ["labels"]}[which]:
            (folder / f"{role}.nii.gz").unlink(missing_ok=True)
            (folder / f"{role}.nii.gz").symlink_to(gone / f"{role}.nii.gz")
        role = "labels" if which == "labels" else "ct"
        fragment = f"{folder / f'{role}.nii.gz'} is a symlink to {gone / f'{role}.nii.gz'}, which does not exist"
    refused(synthrad_config(synthrad, labels=False), tmp_path, fragment)


def test_synthrad_volumes_one_folder_deeper(tmp_path, synthrad, subjects, results):
    folder = unlabelled(synthrad) / subjects[2]
    folder.rename(tmp_path / "moved")
    folder.mkdir()
    (tmp_path / "moved").rename(folder / subjects[2])
    refused(synthrad_config(synthrad, labels=False), tmp_path, f"subject '{subjects[2]}': missing", "one folder deeper")


def test_synthrad_volume_files_beside_the_subject_folders(tmp_path, synthrad, subjects, results):
    shutil.copy(synthrad / subjects[0] / "ct.nii.gz", unlabelled(synthrad) / "1PA005_ct.nii.gz")
    refused(synthrad_config(synthrad, labels=False), tmp_path, "holds volume files directly (1PA005_ct.nii.gz)")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [("label.nii.gz", "found label.nii.gz"), ("MR.nii.gz", "also holds MR.nii.gz beside mr.nii.gz")],
)
def test_synthrad_near_miss_beside_the_expected_files(tmp_path, synthrad, subjects, results, name, fragment):
    folder = unlabelled(synthrad) / subjects[1]
    shutil.copy(synthrad / subjects[0] / "mr.nii.gz", folder / name)
    refused(synthrad_config(synthrad, labels=False), tmp_path, f"subject '{subjects[1]}'", fragment)


def test_synthrad_task2_folder_says_what_it_holds(tmp_path, synthrad, subjects, results):
    folder = unlabelled(synthrad) / subjects[1]
    (folder / "mr.nii.gz").rename(folder / "cbct.nii.gz")
    refused(synthrad_config(synthrad, labels=False), tmp_path, "missing", "the folder holds cbct.nii.gz")


@pytest.mark.parametrize(
    ("kind", "fragment"), [("folder", "is a folder, not a file"), ("fifo", "is not a regular file")]
)
def test_synthrad_volume_name_that_is_not_a_file(tmp_path, synthrad, subjects, results, kind, fragment):
    folder = unlabelled(synthrad) / subjects[1]
    (folder / "mr.nii.gz").unlink()
    (folder / "mr.nii.gz").mkdir() if kind == "folder" else os.mkfifo(folder / "mr.nii.gz")
    refused(synthrad_config(synthrad, labels=False), tmp_path, f"{folder / 'mr.nii.gz'} {fragment}")


def test_sheet_path_that_is_a_dangling_symlink(tmp_path, synthrad, subjects, results):
    path = synthrad / subjects[1] / "ct.nii.gz"
    path.unlink()
    path.symlink_to(synthrad / subjects[1] / "ct_deleted.nii.gz")
    refused(write_sheet(synthrad, rows_for(subjects)), tmp_path, "ct_deleted.nii.gz, which does not exist")


def test_a_folder_without_volumes_is_ignored_and_named(tmp_path, synthrad, subjects):
    (unlabelled(synthrad) / "overview").mkdir()
    (synthrad / "overview" / "1_pelvis_train.xlsx").write_bytes(b"not a volume")
    code, err = cli_verdict(synthrad_config(synthrad, labels=False), tmp_path)
    assert code == 0, err
    assert "not subject folders" in err and "ignored: overview" in err


# --------------------------------------------------------------------------- #
# the thresholds are config keys; the defaults accept real scans
# --------------------------------------------------------------------------- #
def test_check_keys_are_in_the_schema_and_config_yaml_with_a_description_and_range():
    from mr2ct.config import schema
    from mr2ct.data.cohort import default_checks

    spec = schema()["properties"]["data"]["properties"]["checks"]
    assert spec["additionalProperties"] is False
    for key, prop in spec["properties"].items():
        assert prop["type"] in ("number", "integer") and prop.get("description"), key
        assert ("minimum" in prop or "exclusiveMinimum" in prop) and "maximum" in prop, key
    assert load_yaml(ROOT / "config.yaml")["data"]["checks"] == default_checks()
    text = (ROOT / "config.yaml").read_text()
    for key in spec["properties"]:
        line = next(line for line in text.splitlines() if line.strip().startswith(f"{key}:"))
        assert "#" in line, f"config.yaml: {key} has no comment"


@pytest.mark.parametrize(
    ("checks", "fragment"),
    [
        ({"mask_max_air_fraction": 1.5}, "'data.checks.mask_max_air_fraction'"),
        ({"min_slices": 0}, "'data.checks.min_slices'"),
        ({"min_spacing_mm": 0}, "'data.checks.min_spacing_mm'"),
        ({"ct_body_median_max_hu": -5}, "'data.checks.ct_body_median_max_hu'"),
        ({"max_slices": 3}, "max_slices"),
    ],
)
def test_check_values_out_of_range_name_the_key(checks, fragment):
    with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
        validate_config(overlay(checks=checks))


def test_a_threshold_changes_the_verdict_of_both_paths_and_revalidates(tmp_path, synthrad, subjects, results):
    for role in ROLES:
        edit(synthrad / subjects[1] / f"{role}.nii.gz", lambda d: d[:, :, 10:14])
    cache = tmp_path / "cache.json"
    assert "has 4 voxel(s) along axis 2" in parse_verdict(synthrad_config(synthrad), tmp_path, cache)
    loose = synthrad_config(synthrad, checks={"min_slices": 4})
    accepted(loose, tmp_path)
    assert parse_verdict(loose, tmp_path, cache) is None
    # back to the default: the cached pass does not count (the thresholds are part of the cache's context)
    assert "has 4 voxel(s) along axis 2" in parse_verdict(synthrad_config(synthrad), tmp_path, cache)


def test_defaults_accept_the_phantom(tmp_path, tiny_cohort):
    root = tmp_path / "cohort"
    shutil.copytree(tiny_cohort, root)
    config = overlay(source="sheet", sheet=str(root / "subjects.tsv"), labels_table=str(root / "labels.tsv"))
    accepted(config, tmp_path)


def test_defaults_accept_padding_and_metal(tmp_path, synthrad, subjects):
    """Padding of -2048/-3024 outside the field of view and a hip implant of several thousand HU (extended
    scale) are normal in real pelvic CT: HU is judged by the body, not the extremes."""

    def pad_and_implant(d):
        d = d.astype(np.int16)
        d[:4] = -3024
        d[-4:] = -2048
        body = np.argwhere(d > 300)  # bone
        x, y, z = body[len(body) // 2]
        d[x - 2 : x + 2, y - 2 : y + 2, :] = 8000
        return d

    for subject in subjects:
        edit(synthrad / subject / "ct.nii.gz", pad_and_implant)
    accepted(synthrad_config(synthrad), tmp_path)


def dicom_volume(name: str, slices: int) -> tuple[np.ndarray, np.ndarray]:
    """A real single-slice scan shipped with pydicom, in physical units, as a NIfTI-ordered array (i along the
    rows' direction, j along the columns') of ``slices`` copies and its RAS affine from the DICOM geometry.
    pydicom ships no multi-slice CT or MR (emri_small, the MR-SIEMENS series are downloaded on demand), so the
    slice is repeated: the statistics the checks judge (HU in the body, mask, labels) are the slice's own."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file(name, download=False))
    pixels = ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1)) + float(
        getattr(ds, "RescaleIntercept", 0)
    )
    row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    thickness = float(ds.SliceThickness)
    lps = np.eye(4)
    lps[:3, 0] = row_dir * col_spacing
    lps[:3, 1] = col_dir * row_spacing
    lps[:3, 2] = np.cross(row_dir, col_dir) * thickness
    lps[:3, 3] = np.array(ds.ImagePositionPatient, float)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # DICOM LPS to NIfTI RAS
    return np.repeat(pixels.T[:, :, None], slices, axis=2), affine


def real_subject(folder: Path, grid: str) -> tuple[Path, dict[str, np.ndarray]]:
    """A subject of real scans: pydicom's CT_small (a thoracic CT) and MR_small (an MR), on the grid of one of them."""
    from scipy import ndimage

    ct, ct_affine = dicom_volume("CT_small.dcm", 12)
    mr, mr_affine = dicom_volume("MR_small.dcm", 12)
    if grid == "ct":  # MR upsampled 2x onto the CT's 128 x 128 grid
        mr, affine = np.kron(mr, np.ones((2, 2, 1), np.float32)), ct_affine
    else:  # CT subsampled onto the MR's 64 x 64 grid (0.31 x 0.31 x 0.8 mm voxels)
        ct, affine = ct[::2, ::2], mr_affine
    mask = ndimage.binary_fill_holes(ct > -500).astype(np.uint8)
    labels = ((ct > 200) & (mask > 0)).astype(np.uint8)  # bone
    folder.mkdir(parents=True)
    volumes = {"mr": mr.astype(np.int16), "ct": ct.astype(np.int16), "mask": mask, "labels": labels}
    for role, data in volumes.items():
        save(folder / f"{role}.nii.gz", data, affine)
    return folder, volumes


@pytest.mark.parametrize("grid", ["ct", "mr"])
def test_defaults_accept_real_scans(tmp_path, grid):
    root = tmp_path / "real"
    real_subject(root / "real01", grid)
    pd.DataFrame({"id": [1], "name": ["bone"]}).to_csv(tmp_path / "labels.tsv", sep="\t", index=False)
    config = validate_config(
        overlay(source="synthrad", synthrad_dir=str(root), labels_table=str(tmp_path / "labels.tsv"))
    )
    table = validate_cohort(cohort_from_config(config))
    assert table["subject"].tolist() == ["real01"]
    assert float(table["ct_max_hu"].iloc[0]) > 1000  # real bone
    # the whole field of view of this crop is body (lungs included): also a plausible body mask
    ct, affine = load(root / "real01" / "ct.nii.gz")
    save(root / "real01" / "mask.nii.gz", np.ones(ct.shape, np.uint8), affine)
    validate_cohort(cohort_from_config(config))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d * 10, "tenths of HU"),
        (lambda d: d - 1024, "offset was applied twice"),
        (lambda d: np.where(np.arange(d.shape[0])[:, None, None] < 4, -1024, d + 1024), "stored 0-based"),
    ],
    ids=["tenths", "offset_twice", "zero_based_with_padding"],
)
def test_real_ct_not_in_hu_is_refused(tmp_path, change, fragment):
    folder, volumes = real_subject(tmp_path / "real" / "real01", "ct")
    _, affine = load(folder / "ct.nii.gz")
    save(folder / "ct.nii.gz", change(volumes["ct"].astype(np.int32)).astype(np.int32), affine)
    (folder / "labels.nii.gz").unlink()
    config = validate_config(overlay(source="synthrad", synthrad_dir=str(folder.parent)))
    with pytest.raises(InputError, match=fragment):
        validate_cohort(cohort_from_config(config))
