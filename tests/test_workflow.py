"""The real Snakemake workflow on the tiny config (data stage), and the paper config's DAG."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mr2ct.data.preprocess import load_preprocessed

from .conftest import ROOT, snakemake_cmd

pytestmark = pytest.mark.slow


def snakemake(workdir, *args, check=True, timeout=1800):
    """The README's command (the local profile) in ``workdir``; fails the test after ``timeout`` seconds."""
    cmd = snakemake_cmd(workdir, "--profile", str(ROOT / "profiles/local"), *args)
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("wf")
    snakemake(workdir, "--configfile", str(ROOT / "configs/tiny.yaml"))
    return workdir


def test_tiny_data_stage_produces_cohort_cache_and_splits(tiny_run):
    results = tiny_run / "results"
    validation = pd.read_csv(results / "cohort/validation.tsv", sep="\t")
    assert len(validation) == 6
    splits = pd.read_csv(results / "splits/splits.tsv", sep="\t")
    assert set(splits["fold"]) == {0, 1}
    for subject in validation["subject"]:
        cache = load_preprocessed(results / f"preprocessed/{subject}.npz")
        assert cache.mr.shape[1:] == (32, 32) and cache.ct.shape == cache.mr.shape
        assert cache.mr.min() >= -1 and cache.mr.max() <= 1 and cache.ct.min() >= -1 and cache.ct.max() <= 1
        assert cache.labels is not None and cache.labels.max() == 12
        assert (results / f"logs/preprocess/{subject}.log").exists()
        assert (results / f"benchmarks/preprocess/{subject}.tsv").exists()


def test_tiny_run_ends_with_tables_statistics_figures_and_report(tiny_run):
    results = tiny_run / "results"
    synthesis = pd.read_csv(results / "tables/synthesis_metrics.csv")
    columns = ["size", "model", "fold", "replicate", "subject", "mae", "psnr", "ssim", "mae_boundary"]
    assert list(synthesis.columns) == columns
    expected_models = {
        "cyclegan",
        "cyclegan_gc",
        "reference_supervised",
        "baseline_constant",
        "baseline_histmatch",
        "reference_resampled",
    }
    assert set(synthesis["model"]) == expected_models
    assert len(synthesis) == len(expected_models) * 6  # every test subject of both folds, one size
    assert synthesis[["mae", "psnr", "ssim"]].notna().all().all()
    segmentation = pd.read_csv(results / "tables/segmentation_metrics.csv")
    assert set(segmentation["source"]) == {"real_ct", "synthetic_ct"}
    assert set(segmentation["structure"]) >= {"pelvis", "femur_left", "femur_right", "bladder"}
    statistics = pd.read_csv(results / "tables/statistics.csv")
    assert {"wilcoxon_p", "ci_low", "ci_high", "median_difference"} <= set(statistics.columns)
    for stem in (
        "mae_vs_training_size",
        "psnr_vs_training_size",
        "boundary_mae_vs_training_size",
        "qualitative_hip",
        "dice_by_structure",
        "surface_distance_by_structure",
        "training_curves",
    ):
        for ext in ("png", "pdf"):
            assert (results / f"figures/{stem}.{ext}").stat().st_size > 1000, f"{stem}.{ext}"
    for subject in ("phantom001", "phantom003", "phantom005"):
        assert (results / f"synthetic_ct/2/cyclegan_gc/fold0/rep0/{subject}.nii.gz").exists()
        assert (results / f"labels/2/cyclegan_gc/fold0/rep0/{subject}.nii.gz").exists()
    code = pd.read_csv(results / "tables/provenance_summary.csv")
    assert len(code) == 1 and code["records"].iloc[0] > 50  # one code version and config made every record
    snakemake(tiny_run, "--configfile", str(ROOT / "configs/tiny.yaml"), "--report", str(results / "report.html"))
    assert (results / "report.html").stat().st_size > 100_000


FIGURE_STEMS = (
    "mae_vs_training_size",
    "psnr_vs_training_size",
    "ssim_vs_training_size",
    "boundary_mae_vs_training_size",
    "qualitative_hip",
    "dice_by_structure",
    "surface_distance_by_structure",
    "training_curves",
)


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser: install Debian's chromium (.ci/run does so when it runs as root)")


def test_report_renders_every_figure_in_a_headless_browser(tiny_run, tmp_path):
    """Open the Snakemake report in real headless Chromium, click through every result (a
    script appended to a copy of the report does the clicking), check that each figure
    decoded, and take a screenshot of the qualitative figure that must not be blank."""
    import html
    import json
    import re

    import matplotlib.image

    browser = _chromium()
    report = tiny_run / "results/report.html"
    if not report.exists():
        snakemake(tiny_run, "--configfile", str(ROOT / "configs/tiny.yaml"), "--report", str(report))
    page = tmp_path / "report_checked.html"
    script = (ROOT / "tests/report_check.js").read_text()
    page.write_text(report.read_text() + "\n<script>\n" + script + "\n</script>\n")
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--virtual-time-budget=60000",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180).stdout
    found = re.findall(r'<pre id="mr2ct-report-check" style="display: none;">(.*?)</pre>', dom, re.S)
    assert found, f"the check script left no record; page start:\n{dom[:2000]}"
    record = json.loads(html.unescape(found[-1]))
    assert record["errors"] == []
    assert set(record["categories"]) == {"Figures", "Provenance", "Tables"}
    assert "Hiasa et al. 2018" in record["workflowText"]
    shown = {Path(r["file"]).stem: r for r in record["results"] if r["category"] == "Figures"}
    assert set(shown) == set(FIGURE_STEMS)
    for stem, result in shown.items():
        assert result["image"] and result["complete"], f"{stem} was not displayed"
        assert result["width"] > 500 and result["height"] > 300, f"{stem} did not decode: {result}"
    tables = {Path(r["file"]).name for r in record["results"] if r["category"] == "Tables"}
    assert {"synthesis_metrics.csv", "segmentation_metrics.csv", "statistics.csv"} <= tables

    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180, check=True)
    pixels = matplotlib.image.imread(shot)[..., :3].mean(axis=2)
    figure_area = pixels[:, pixels.shape[1] // 3 :]  # right of the menu, where the figure is shown
    assert figure_area.std() > 0.1 and (figure_area < 0.5).mean() > 0.05, "the figure view of the report is blank"


def test_every_figure_audits_back_to_the_cohort_and_config(tiny_run):
    figure = "results/figures/mae_vs_training_size.png"
    audit = subprocess.run(
        [sys.executable, "-m", "mr2ct.cli", "audit", figure, "--verify"],
        cwd=tiny_run,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "phantom_subject" in audit.stdout and "config" in audit.stdout and "snakemake" in audit.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "mr2ct.cli", "audit", figure, "--json"],
        cwd=tiny_run,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    import json

    assert json.loads(as_json.stdout)


def test_tiny_run_matches_its_golden_values(tiny_run):
    """The tiny run against ``tests/golden/`` (written by ``benchmarks/golden_tiny.py --write``).

    What it guarantees, on any x86 CPU (the tiny config trains in fp32 everywhere):

    * every run's **first-step losses** (``tiny_first_step.csv``) to 1e-4 relative: they come from
      the seeded initial networks on seeded batches and differ between CPUs only in the last bits
      (4e-6 measured), so a loss term dropped or re-weighted (the GC arm trained without GC moves
      its generator objective by ~2), computed on other images or with another formula fails here;
    * the **per-(model, fold) means** of MAE, PSNR and boundary MAE (``tiny_synthesis.csv``) within
      the spread between CPUs: the deterministic baselines and the real CT taken through the
      synthesis path (``reference_resampled``) to 1e-4 of the value, so a geometry bug of synthesis
      (a mirrored or shifted volume, a wrong HU map) fails; the trained models within max(5 x the
      spread of emulated platforms, 1.5 x the deviations recorded on other CPUs in
      ``other_cpus.csv``), so training that learns nothing or diverges fails, a change of a few HU
      does not (adversarial training amplifies the last bits of a CPU's kernels: BENCHMARKS.md,
      *Tests*). A deliberate change of the numerics regenerates both files, and says so in the commit.
    """
    golden = pd.read_csv(ROOT / "tests/golden/tiny_synthesis.csv")
    table = pd.read_csv(tiny_run / "results/tables/synthesis_metrics.csv")
    means = table.groupby(["model", "fold"])[sorted(set(golden["metric"]))].mean()
    assert set(means.index) == set(zip(golden["model"], golden["fold"]))
    outside = [
        f"{row.model} fold {row.fold} {row.metric}: {means.loc[(row.model, row.fold), row.metric]:.4f}, "
        f"golden {row.value:.4f} ± {row.tolerance:.4f}"
        for row in golden.itertuples()
        if abs(means.loc[(row.model, row.fold), row.metric] - row.value) > row.tolerance
    ]
    first = pd.read_csv(ROOT / "tests/golden/tiny_first_step.csv")
    assert set(first["run"]) == {
        p.parent.relative_to(tiny_run / "results/models").as_posix()
        for p in (tiny_run / "results/models").glob("*/*/fold*/rep*/losses.tsv")
    }
    for run, rows in first.groupby("run"):
        logged = pd.read_csv(tiny_run / "results/models" / run / "losses.tsv", sep="\t").iloc[0]
        outside += [
            f"{run} step 1 {row.column}: {logged[row.column]:.7g}, golden {row.value:.7g} (rtol {row.rtol:g})"
            for row in rows.itertuples()
            if not (abs(logged[row.column] - row.value) <= row.rtol * abs(row.value))
            and not (np.isnan(row.value) and np.isnan(logged[row.column]))  # not defined for that model
        ]
    assert not outside, "tiny run outside its golden values:\n" + "\n".join(outside)


def test_rerun_has_nothing_to_do(tiny_run):
    result = snakemake(tiny_run, "--configfile", str(ROOT / "configs/tiny.yaml"), "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_a_changed_seed_or_split_setting_rewrites_the_splits_table(tiny_run):
    """splits.tsv depends on the subjects, the seed and the split settings, all in the job's params:
    the table a user reads never disagrees with the folds that were trained."""
    for change in ("seed=43", "splits={pairing: shuffled}"):
        plan = snakemake(tiny_run, "--configfile", str(ROOT / "configs/tiny.yaml"), "--config", change, "-n")
        assert job_counts(plan.stdout).get("splits") == 1, change


def test_same_config_gives_identical_cache(tiny_run, tmp_path):
    snakemake(tmp_path, "--configfile", str(ROOT / "configs/tiny.yaml"), "--until", "preprocess")
    for path in (tiny_run / "results/preprocessed").glob("*.npz"):
        a, b = np.load(path), np.load(tmp_path / "results/preprocessed" / path.name)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"{path.name}:{key}")


def result_files(workdir) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every result (not logs, benchmarks or provenance records)."""
    import hashlib

    out = {}
    for path in sorted((workdir / "results").rglob("*")):
        rel = path.relative_to(workdir).as_posix()
        if path.is_file() and not rel.startswith(("results/logs/", "results/benchmarks/", "results/provenance/")):
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


#: the sheet run's cohort as it leaves a scanner: DICOM series, MR acquired apart from the CT, no masks
DICOM_SUBJECTS = {"phantom001", "phantom002"}
MOVED_MR = {"phantom001", "phantom002", "phantom004"}
NO_MASK = {"phantom001", "phantom002", "phantom004"}


@pytest.fixture(scope="module")
def sheet_run(tiny_run, tmp_path_factory):
    """A finished tiny run on a sample-sheet cohort of the tiny phantom's volumes, mixed as a hospital's
    export would be: two subjects as DICOM series (CT and MR), three with the MR on a grid and in a
    position of its own and no body mask, the rest NIfTI files as before; data.registration: rigid."""
    from .dicom_support import scanner_cohort

    workdir = tmp_path_factory.mktemp("sheet_run")
    subjects = [f"phantom{i:03d}" for i in range(1, 7)]
    scanner_cohort(tiny_run / "results/cohort", workdir / "data", subjects, DICOM_SUBJECTS, MOVED_MR, NO_MASK)
    cohort = workdir / "data"
    (workdir / "data.yaml").write_text(
        f"data: {{source: sheet, sheet: {cohort / 'sheet.tsv'}, labels_table: {cohort / 'labels.tsv'}, "
        "registration: rigid}\n"
    )
    snakemake(workdir, *SHEET_ARGS(workdir))
    return workdir


def _ncc(a, b, inside):
    a, b = a[inside] - a[inside].mean(), b[inside] - b[inside].mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_a_scanner_cohort_is_converted_masked_registered_and_audited(sheet_run, tiny_run):
    """DICOM series read back exactly (HU, geometry); masks derived where none was given match the drawn
    ones; every MR acquired apart lies on its CT after registration (which a resampling without it does
    not); the registration table, QC pictures and provenance records name every subject."""
    import SimpleITK as sitk

    from mr2ct.data.io import read_volume
    from mr2ct.data.registration import to_sitk

    results, truth = sheet_run / "results", tiny_run / "results/cohort"
    table = pd.read_csv(results / "tables/registration.csv")
    assert sorted(table["subject"]) == [f"phantom{i:03d}" for i in range(1, 7)] and set(table["method"]) == {"rigid"}
    for subject in sorted(DICOM_SUBJECTS):
        converted, original = (
            read_volume(results / f"cohort/{subject}/ct.nii.gz"),
            read_volume(truth / f"{subject}/ct.nii.gz"),
        )
        assert np.abs(converted.data - np.rint(original.data)).max() == 0
        assert np.allclose(converted.affine, original.affine, atol=1e-3)
    for subject in sorted(NO_MASK):
        derived = read_volume(results / f"cohort/{subject}/mask.nii.gz").data > 0
        drawn = read_volume(truth / f"{subject}/mask.nii.gz").data > 0
        assert 2 * (derived & drawn).sum() / (derived.sum() + drawn.sum()) > 0.97
    for subject in sorted(MOVED_MR):
        body = read_volume(truth / f"{subject}/mask.nii.gz").data > 0
        true_mr, ct = (
            read_volume(truth / f"{subject}/mr.nii.gz").data,
            to_sitk(read_volume(truth / f"{subject}/ct.nii.gz")),
        )
        registered = read_volume(results / f"registration/{subject}/mr.nii.gz").data
        given = (
            results / f"cohort/{subject}/mr.nii.gz"
            if subject in DICOM_SUBJECTS
            else sheet_run / f"data/{subject}/mr.nii.gz"
        )
        unregistered = sitk.Resample(sitk.ReadImage(str(given), sitk.sitkFloat32), ct, sitk.Transform())
        unregistered = sitk.GetArrayFromImage(unregistered).transpose(2, 1, 0)
        assert _ncc(registered, true_mr, body) > 0.9 > _ncc(unregistered, true_mr, body) + 0.25, subject
        assert (results / f"registration/{subject}/qc.png").stat().st_size > 10_000
    # the per-subject validation of what jobs made gates each preparation's use; every subject is in the report
    assert all((results / f"cohort/{s}/validation.tsv").exists() for s in DICOM_SUBJECTS | NO_MASK)
    assert len(pd.read_csv(results / "cohort/validation.tsv", sep="\t")) == 6
    audit = subprocess.run(
        [sys.executable, "-m", "mr2ct.cli", "audit", "results/tables/synthesis_metrics.csv", "--verify"],
        cwd=sheet_run,
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stdout + audit.stderr
    for rule in ("convert_dicom", "body_mask", "register_mr", "validate_prepared"):
        assert f"[{rule} " in audit.stdout, rule
    assert "data/phantom001/ct_dicom/" in audit.stdout  # down to the scanner's files
    snakemake(sheet_run, *SHEET_ARGS(sheet_run), "--report", str(results / "report.html"))
    page = (results / "report.html").read_text(encoding="utf-8")
    assert "Registration" in page and "registration.csv" in page
    assert all(f"registration/{s}/qc.png" in page for s in MOVED_MR)


def SHEET_ARGS(workdir):  # noqa: N802 (a constant that depends on the folder)
    return ("--configfile", str(ROOT / "configs/tiny.yaml"), str(workdir / "data.yaml"))


def _rewrite_mr(path, change):
    import nibabel as nib

    image = nib.load(path)
    nib.save(nib.Nifti1Image(change(image.get_fdata().astype(np.float32)), image.affine), path)


def test_bad_input_stops_before_any_job_and_a_restored_input_reruns_nothing(sheet_run):
    """A NaN in one MR: the workflow refuses to start, naming subject, file and fault, and
    nothing computed changes; restoring the file byte for byte leaves nothing to do."""
    mr = sheet_run / "data/phantom003/mr.nii.gz"
    original = mr.read_bytes()
    before = result_files(sheet_run)

    def poison(data):
        data[3, 3, 3] = np.nan
        return data

    _rewrite_mr(mr, poison)
    result = snakemake(sheet_run, *SHEET_ARGS(sheet_run), check=False)
    assert result.returncode != 0
    assert "subject 'phantom003'" in result.stderr and str(mr) in result.stderr and "NaN" in result.stderr
    assert "Job stats" not in result.stdout + result.stderr  # refused while parsing: no job was planned
    assert result_files(sheet_run) == before
    mr.write_bytes(original)  # restored: new modification time, same bytes
    dry = snakemake(sheet_run, *SHEET_ARGS(sheet_run), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout
    assert result_files(sheet_run) == before


def test_a_changed_input_retrains_the_runs_that_use_it(sheet_run):
    """A non-linear change of one MR reruns what reads it; its training runs start afresh
    (the old checkpoints are of other data) and end with other weights."""
    import hashlib

    mr = sheet_run / "data/phantom003/mr.nii.gz"
    generators = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (sheet_run / "results/models").rglob("generator.pt")
    }
    _rewrite_mr(mr, lambda data: np.sqrt(np.maximum(data, 0.0)) * 20.0)
    snakemake(sheet_run, *SHEET_ARGS(sheet_run))
    logs = "".join(p.read_text() for p in (sheet_run / "results/logs/train").rglob("*.log"))
    assert "training data changed" in logs and "phantom003.npz" in logs
    changed = [p for p, sha in generators.items() if hashlib.sha256(p.read_bytes()).hexdigest() != sha]
    assert changed, "no model was retrained"
    dry = snakemake(sheet_run, *SHEET_ARGS(sheet_run), "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_audit_of_a_directory_output_passes_untouched_and_names_a_flipped_byte(tiny_run):
    """Synthetic-CT folders are directory outputs (Snakemake adds .snakemake_timestamp to them)."""
    folder = "results/synthetic_ct/2/cyclegan_gc/fold0/rep0"
    assert (tiny_run / folder / ".snakemake_timestamp").exists()

    def audit(*args):
        return subprocess.run(
            [sys.executable, "-m", "mr2ct.cli", "audit", *args, "--verify"],
            cwd=tiny_run,
            capture_output=True,
            text=True,
            timeout=300,
        )

    clean = audit(folder)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    target = tiny_run / folder / "phantom001.nii.gz"
    original = target.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    try:
        target.write_bytes(bytes(flipped))
        tampered = audit("results/tables/synthesis_metrics.csv")
        assert tampered.returncode == 1
        assert f"CHANGED  {folder}/phantom001.nii.gz" in tampered.stdout, tampered.stdout
        assert f"1 problem(s): CHANGED {folder}/phantom001.nii.gz" in tampered.stderr, tampered.stderr
    finally:
        target.write_bytes(original)


def test_config_error_stops_the_workflow_before_any_job(tmp_path):
    result = snakemake(
        tmp_path, "--configfile", str(ROOT / "configs/tiny.yaml"), "--config", "splits={sizes: [9]}", check=False
    )
    assert result.returncode != 0
    assert "splits.sizes" in result.stderr and "available" in result.stderr
    assert not (tmp_path / "results").exists()


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a Snakemake (dry) run: rule -> number of jobs."""
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, flags=re.MULTILINE)}


def test_paper_config_dry_run_on_the_slurm_profile_plans_the_sweep_with_gpus_for_training(tmp_path):
    """configs/paper.yaml with profiles/slurm as shipped (its default site block): job counts of the
    design and what each job would ask SLURM for (no cluster needed for a dry run)."""
    cmd = snakemake_cmd(
        tmp_path, "--profile", str(ROOT / "profiles/slurm"), "--configfile", str(ROOT / "configs/paper.yaml")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MR2CT_SLURM_")}
    result = subprocess.run([*cmd, "-n"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    # 40 subjects; 8 sizes x 2 arms x 5 folds x 3 seeds (splits.replicates) training runs and one
    # supervised reference per size and fold; the segmenter and the reference predictions once per
    # fold (and size), never per seed
    assert counts["preprocess"] == 40 and counts["train"] == 8 * 5 * (2 * 3 + 1) == counts["synthesize"]
    assert counts["segment_synthetic_ct"] == counts["train"] and counts["train_segmentation"] == 5
    assert counts["reference_metrics"] == 8 * 5 and counts["segment_real_ct"] == 5
    resources: dict[str, list[str]] = {}
    for block in re.finditer(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", result.stdout, flags=re.MULTILINE | re.DOTALL):
        line = re.search(r"^\s+resources: (.*)$", block[2], flags=re.MULTILINE)
        resources.setdefault(block[1], []).append(line[1] if line else "")
    assert len(resources["train"]) == counts["train"]
    for rule, runtime in (("train", 240), ("train_segmentation", 120)):
        for requested in resources[rule]:
            assert "gpu=1" in requested and "slurm_partition=gpu" in requested, requested
            assert f"runtime={runtime}," in requested and "mem_mb=16000" in requested, requested
    cpu = [r for rule, rs in resources.items() if not rule.startswith("train") for r in rs]
    assert cpu and not any("gpu" in r.replace("tmpdir", "") for r in cpu)
    # the config's time budgets leave the SLURM wall times room for a last checkpoint
    from mr2ct.config import load_config, load_yaml

    paper = load_config(ROOT / "config.yaml", load_yaml(ROOT / "configs/paper.yaml"))
    assert paper["train"]["time_budget_minutes"] < 240 and paper["segmentation"]["time_budget_minutes"] < 120


def test_replicates_add_seeded_runs_without_retraining_the_first(tiny_run, tmp_path):
    """splits.replicates 2 on a finished tiny run: only the new seed's runs of the arms train (replicate 0
    keeps its seed, so its models and scores stay), tables gain its rows, the statistics pair
    the arms per replicate and report the between-seed spread."""
    workdir = tmp_path / "replicated"
    shutil.copytree(tiny_run, workdir, symlinks=True)
    results = workdir / "results"
    first = results / "models/2/cyclegan_gc/fold0/rep0/generator.pt"
    before = (first.stat().st_mtime_ns, first.read_bytes())
    tiny = ("--configfile", str(ROOT / "configs/tiny.yaml"), "--config", "splits={replicates: 2}")
    plan = job_counts(snakemake(workdir, *tiny, "-n", "--quiet", "rules").stdout)
    assert plan["train"] == 4 and plan["synthesize"] == 4  # the arms' rep1 runs, nothing of rep0
    assert "train_segmentation" not in plan and "reference_metrics" not in plan
    snakemake(workdir, *tiny)
    assert (first.stat().st_mtime_ns, first.read_bytes()) == before
    import torch

    from mr2ct.models.synthesis import load_generator

    weights = [load_generator(results / f"models/2/cyclegan_gc/fold0/rep{r}/generator.pt").state_dict() for r in (0, 1)]
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # another seed, other weights
    synthesis = pd.read_csv(results / "tables/synthesis_metrics.csv")
    counts = synthesis.groupby("model")["replicate"].agg(lambda r: tuple(sorted(set(r))))
    assert counts["cyclegan_gc"] == counts["cyclegan"] == (0, 1)  # the supervised reference is not compared:
    assert counts["reference_supervised"] == counts["baseline_constant"] == counts["reference_resampled"] == (0,)
    original = pd.read_csv(tiny_run / "results/tables/synthesis_metrics.csv")
    pd.testing.assert_frame_equal(
        synthesis[synthesis["replicate"] == 0].reset_index(drop=True), original.reset_index(drop=True)
    )
    statistics = pd.read_csv(results / "tables/statistics.csv")
    mae = statistics[(statistics["experiment"] == "synthesis") & (statistics["metric"] == "mae")].iloc[0]
    assert mae["n_pairs"] == 12 and mae["n_replicates"] == 2 and np.isfinite(mae["seed_sd_difference"])
    segmentation = pd.read_csv(results / "tables/segmentation_metrics.csv")
    assert set(segmentation.loc[segmentation["source"] == "synthetic_ct", "replicate"]) == {0, 1}
    assert "seeds" in (results / "tables/summary.md").read_text()


LONGER_TRAINING = ("--config", "train={steps: 400, checkpoint_every: 10, eval_every: 100}")
TABLE = "results/tables/synthesis_metrics.csv"


def _start(workdir, *args):
    cmd = snakemake_cmd(workdir, "--cores", "1", TABLE, "--configfile", str(ROOT / "configs/tiny.yaml"), *args)
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "snakemake.out", "a")
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_kill_9_mid_training_then_rerun_resumes_and_gives_identical_tables(tmp_path):
    """kill -9 of Snakemake and its training job while a run trains; a second invocation
    meanwhile is refused (lock); after --unlock, the README's command with
    --rerun-incomplete finishes, the killed run resumes from its checkpoint, and the table
    equals that of an uninterrupted run of the same config, byte for byte."""
    import glob
    import os
    import signal
    import time

    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    clean = _start(clean_dir, *LONGER_TRAINING)  # the reference, on the other core
    proc = _start(killed_dir, *LONGER_TRAINING)
    try:
        deadline = time.monotonic() + 600
        victim = None
        while victim is None:
            assert proc.poll() is None, (killed_dir / "snakemake.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "no training checkpoint within 10 min"
            # a CycleGAN run (400 steps): the supervised run of this config is over within one checkpoint
            for checkpoint in glob.glob(str(killed_dir / "results/models/*/cyclegan*/fold*/rep*/checkpoint.pt")):
                if not os.path.exists(os.path.join(os.path.dirname(checkpoint), "generator.pt")):
                    victim = os.path.dirname(checkpoint)
                    break
            time.sleep(0.05)

        second = subprocess.run(
            snakemake_cmd(
                killed_dir, "--cores", "1", TABLE, "--configfile", str(ROOT / "configs/tiny.yaml"), *LONGER_TRAINING
            ),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        # refused: by the lock, or (if it looks while a finished job's markers are being cleared)
        # by Snakemake's incomplete-output check, which runs before the lock
        refusal = second.stdout + second.stderr
        assert second.returncode != 0 and ("cannot be locked" in refusal or "seem to be incomplete" in refusal), refusal

        os.killpg(proc.pid, signal.SIGKILL)  # Snakemake and the training job it runs
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not os.path.exists(os.path.join(victim, "generator.pt"))

    locked = snakemake(
        killed_dir, TABLE, "--configfile", str(ROOT / "configs/tiny.yaml"), *LONGER_TRAINING, check=False
    )
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # the message says what to do
    snakemake(killed_dir, TABLE, "--configfile", str(ROOT / "configs/tiny.yaml"), *LONGER_TRAINING, "--unlock")
    snakemake(
        killed_dir, TABLE, "--configfile", str(ROOT / "configs/tiny.yaml"), *LONGER_TRAINING, "--rerun-incomplete"
    )

    run = Path(victim).relative_to(killed_dir)
    # results/models/<size>/<model>/fold<k>/rep<r> -> results/logs/train/<size>/<model>/fold<k>/rep<r>.log
    log = (killed_dir / "results/logs/train" / run.relative_to("results/models")).with_suffix(".log")
    train_log = log.read_text()
    assert "resumed from" in train_log, train_log
    assert clean.wait(timeout=900) == 0, (clean_dir / "snakemake.out").read_text()[-3000:]
    assert (killed_dir / TABLE).read_bytes() == (clean_dir / TABLE).read_bytes()
    for name in ("losses.tsv", "validation.tsv"):
        assert (killed_dir / run / name).read_bytes() == (clean_dir / run / name).read_bytes(), name


def test_another_seed_gives_other_numbers(tiny_run, tmp_path):
    snakemake(tmp_path, TABLE, "--configfile", str(ROOT / "configs/tiny.yaml"), "--config", "seed=7")
    ours, theirs = pd.read_csv(tmp_path / TABLE), pd.read_csv(tiny_run / TABLE)
    assert list(ours.columns) == list(theirs.columns) and len(ours) == len(theirs)
    assert not ours[["mae", "psnr"]].equals(theirs[["mae", "psnr"]])


@pytest.fixture
def synthrad_task(tiny_cohort, tmp_path):
    """A SynthRAD2023 Task 1 folder as downloaded: Task1/pelvis/<subject>/{mr,ct,mask}.nii.gz and an
    overview/ folder, no label maps; the tiny phantom's subjects under SynthRAD-like ids."""
    root = tmp_path / "Task1" / "pelvis"
    (root / "overview").mkdir(parents=True)
    (root / "overview" / "1_pelvis_train.xlsx").write_bytes(b"not a volume")
    ids = {}
    for k, folder in enumerate(sorted(p for p in tiny_cohort.iterdir() if p.is_dir())):
        subject = f"1PA{k + 1:03d}"
        ids[subject] = folder
        (root / subject).mkdir()
        for m in ("mr", "ct", "mask"):
            shutil.copy2(folder / f"{m}.nii.gz", root / subject / f"{m}.nii.gz")
    design = tmp_path / "design.yaml"
    design.write_text(f"data: {{source: synthrad, synthrad_dir: {root}}}\nsplits: {{validation_subjects: 0}}\n")
    return root, ids, design


def _plan(workdir, *configs):
    result = snakemake(workdir, "-n", "--configfile", str(ROOT / "configs/tiny.yaml"), *map(str, configs), check=False)
    return result, result.stdout + result.stderr


def test_synthrad_without_labels_plans_experiment_1_and_says_why_not_2(synthrad_task, tmp_path):
    root, _, design = synthrad_task
    result, text = _plan(tmp_path / "wf", design)
    assert result.returncode == 0, text
    assert "not subject folders" in text and "overview" in text
    assert "no label maps" in text and "data.labels_dir" in text
    assert re.search(r"^train\s+\d+", text, re.M) and not re.search(r"^train_segmentation\s", text, re.M)


def test_synthrad_with_a_labels_dir_plans_experiment_2(synthrad_task, tiny_cohort, tmp_path):
    root, ids, design = synthrad_task
    labels = tmp_path / "labels"
    labels.mkdir()
    for subject, folder in ids.items():
        shutil.copy2(folder / "labels.nii.gz", labels / f"{subject}.nii.gz")
    extra = tmp_path / "labels.yaml"
    extra.write_text(f"data: {{labels_dir: {labels}, labels_table: {tiny_cohort / 'labels.tsv'}}}\n")
    result, text = _plan(tmp_path / "wf", design, extra)
    assert result.returncode == 0, text
    assert re.search(r"^train_segmentation\s+2", text, re.M) and "no label maps" not in text
    # a label map missing for one subject, or one with an unknown label id: clear errors before any job
    (labels / "1PA002.nii.gz").unlink()
    result, text = _plan(tmp_path / "wf", design, extra)
    assert result.returncode != 0 and "data.labels_dir" in text and "1PA002" in text
    shutil.copy2(ids["1PA001"] / "labels.nii.gz", labels / "1PA002.nii.gz")
    import nibabel as nib

    image = nib.load(labels / "1PA003.nii.gz")
    data = np.asarray(image.dataobj).copy()
    data[data == 12] = 99
    nib.save(nib.Nifti1Image(data, image.affine), labels / "1PA003.nii.gz")
    result, text = _plan(tmp_path / "wf", design, extra)
    assert result.returncode != 0 and "subject '1PA003'" in text and "[99]" in text
