# Reads the config and the cohort: validation, subjects, what the workflow prepares,
# folds, wildcard constraints and input functions. Rules never index tables.
import os
import re
import sys
from pathlib import Path

# The workflow imports the package from its own folder; jobs do the same through
# workflow_scripts/_package.py (local, conda envs, SLURM alike).
if workflow.basedir not in sys.path:
    sys.path.insert(0, workflow.basedir)

from snakemake.settings.types import ExecMode

from mr2ct.data.cohort import cohort_from_config, read_label_table

from mr2ct.data.validation import validate_changed
from mr2ct.evaluation.metrics import bone_label_ids
from mr2ct.data.phantom import LABELS as PHANTOM_LABELS
from mr2ct.settings import ARMS, FIGURE_STEMS, LABEL_FIGURES
from mr2ct.config import load_yaml, merge, validate_config
from mr2ct.data.splits import splits_from_config, statistics_warning

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# Files given with --configfile are overlays on the default config.yaml (Snakemake
# replaces the `configfile:` when --configfile is used, so merge explicitly).
# Fails here, before any job, naming the config key / file / subject at fault. Snakemake read
# the overlays with its own YAML loader; read them again with ours, which refuses a repeated key,
# a leading-zero (octal) or base-60 number instead of keeping what YAML 1.1 makes of it.
for _overlay in workflow.overwrite_configfiles or ():
    load_yaml(_overlay)
_effective = validate_config(merge(load_yaml(Path(workflow.basedir) / "config.yaml"), config))
config.clear()
config.update(_effective)
COHORT = cohort_from_config(config, RESULTS)
# Read and check every volume of a given cohort before any job (only the volumes that changed
# since they passed): a bad input stops the workflow here, so no job fails and no finished
# result is invalidated by it. Jobs re-parsing the workflow (cluster, group jobs) skip it.
# The generated phantom is checked by validate_cohort once its files exist.
if not COHORT.generated and workflow.exec_mode == ExecMode.DEFAULT:
    validate_changed(COHORT, config["data"]["geometry_tolerance_mm"], ".snakemake/mr2ct/validated_subjects.json")
SUBJECTS = COHORT.ids
FOLDS = splits_from_config(SUBJECTS, config)
_design_warning = statistics_warning(FOLDS)
if _design_warning:
    print(f"mr2ct: warning: {_design_warning}", file=sys.stderr)
SIZES = sorted(config["splits"]["sizes"])
MODELS = config["models"]
# seeds of a training run (splits.replicates): rep0 has the seed an unreplicated run would have
REPLICATES = list(range(config["splits"]["replicates"]))
FOLD_IDS = [f.fold for f in FOLDS]
# experiment 2 needs reference labels (the phantom has them; other cohorts when labels_table is set)
LABELLED = COHORT.labels_table is not None
# the label table (the phantom's is written by a job; its ids are fixed) and which of its labels are bone
LABEL_TABLE = (PHANTOM_LABELS if COHORT.generated else read_label_table(COHORT.labels_table)) if LABELLED else {}
BONE_LABELS = bone_label_ids(LABEL_TABLE)
if COHORT.notes.get("ignored_folders"):
    print(
        f"mr2ct: note: {config['data']['synthrad_dir']}: not subject folders (no mr/ct/mask.nii.gz), ignored: "
        + ", ".join(COHORT.notes["ignored_folders"]),
        file=sys.stderr,
    )
#: how the workflow makes the files of subjects whose cohort does not give them ready (mr2ct.data.cohort.Preparation)
PREPARATION = COHORT.preparation
#: the DICOM series to convert, by "<subject>/<role>" (the stem of results/cohort/<subject>/<role>.nii.gz)
DICOM_SERIES = {f"{s}/{role}": series for s, prep in PREPARATION.items() for role, series in prep.dicom.items()}
#: subjects without a body mask, which is derived from their CT
DERIVED_MASKS = [s for s, prep in PREPARATION.items() if prep.derives_mask]
#: MR-to-CT registration (data.registration): none, rigid or affine
REGISTRATION = config["data"]["registration"]
if PREPARATION:
    _steps = {}
    for _prep in PREPARATION.values():
        for _step in _prep.steps():
            _steps[_step] = _steps.get(_step, 0) + 1
    print(
        "mr2ct: note: the workflow prepares the files of "
        + f"{len(PREPARATION)} subject(s) before anything reads them: "
        + ", ".join(f"{step} ({n})" for step, n in _steps.items()),
        file=sys.stderr,
    )
if not LABELLED:
    print(
        "mr2ct: note: the cohort has no label maps, so experiment 2 (segmentation of real and synthetic CT) is not "
        "run. To run it, give one label map per subject (data.labels_dir: a folder of <subject>.nii.gz, or a "
        "labels column / labels.nii.gz) and data.labels_table (README, 'SynthRAD2023').",
        file=sys.stderr,
    )


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    size="|".join(str(s) for s in SIZES),
    model="|".join(MODELS),
    fold="|".join(str(f) for f in FOLD_IDS),
    replicate="|".join(str(r) for r in REPLICATES),


def subject_files(wildcards):
    """The volumes of one subject (labels only when the cohort has them) and, for a subject whose
    files the workflow prepared, the validation that gates every use of them."""
    files = {k: str(v) for k, v in COHORT[wildcards.subject].paths().items()}
    if wildcards.subject in PREPARATION:
        files["validated"] = f"{RESULTS}/cohort/{wildcards.subject}/validation.tsv"
    return files


def prepared_files(wildcards):
    """What the validation of a prepared subject reads: its volumes and the label table."""
    files = {k: str(v) for k, v in COHORT[wildcards.subject].paths().items()}
    if COHORT.labels_table is not None:
        files["label_table"] = str(COHORT.labels_table)
    return files


def dicom_files(wildcards):
    """Every file of the folder of a DICOM series to convert."""
    return [str(p) for p in DICOM_SERIES[wildcards.series].files()]


def choices(names):
    """A wildcard constraint that matches exactly ``names``."""
    return "|".join(re.escape(n) for n in names)


def cohort_files(wildcards=None):
    """Every raw volume of the cohort, plus its label table."""
    files = [str(p) for s in COHORT.subjects for p in s.paths().values()]
    if COHORT.labels_table is not None:
        files.append(str(COHORT.labels_table))
    return files


def preprocessed(subjects):
    return [f"{RESULTS}/preprocessed/{s}.npz" for s in subjects]


def run_path(
    stage, wildcards=None, size="{size}", model="{model}", fold="{fold}", replicate="{replicate}", root=RESULTS
):
    """<root>/<stage>/<size>/<model>/fold<fold>/rep<replicate>: the experiment design, readable from
    `ls results` (also the stem of a run's per-job table, log and benchmark)."""
    return f"{root}/{stage}/{size}/{model}/fold{fold}/rep{replicate}"


def training_set(wildcards):
    return FOLDS[int(wildcards.fold)].training_set(int(wildcards.size), config["splits"]["pairing"])


def train_inputs(wildcards):
    """Cached slices of a run's MR sources, CT sources and validation subjects."""
    fold = FOLDS[int(wildcards.fold)]
    ts = training_set(wildcards)
    mr, ct = (ts.subjects, ts.subjects) if wildcards.model == "reference_supervised" else (ts.mr, ts.ct)
    return {"mr": preprocessed(mr), "ct": preprocessed(ct), "validation": preprocessed(fold.validation)}


def train_settings(wildcards):
    """Hyperparameters and seed of one run (a dict, so Snakemake reruns a job when they change)."""
    from dataclasses import asdict
    from mr2ct.settings import TrainSettings

    w = wildcards
    return asdict(TrainSettings.from_config(config, w.model, int(w.size), int(w.fold), int(w.replicate)))


def segmentation_settings(wildcards):
    from dataclasses import asdict
    from mr2ct.settings import SegmentationSettings

    n_classes = max(LABEL_TABLE) + 1
    return asdict(SegmentationSettings.from_config(config, int(wildcards.fold), n_classes))


def test_caches(wildcards):
    return preprocessed(FOLDS[int(wildcards.fold)].test)


def test_subjects(wildcards):
    """The fold's test subjects, in the order of every per-subject input list of its jobs."""
    return list(FOLDS[int(wildcards.fold)].test)


def _files(subjects, kind):
    return [str(getattr(COHORT[s], kind)) for s in subjects]


def test_references(wildcards):
    """What a fold's scores compare with: the test subjects' CT and body mask, and with labels
    their label volumes and the label table (one list per kind, in test_subjects order)."""
    subjects = test_subjects(wildcards)
    files = {"ct": _files(subjects, "ct"), "mask": _files(subjects, "mask")}
    if LABELLED:
        files.update(labels=_files(subjects, "labels"), label_table=str(COHORT.labels_table))
    return files


def baseline_inputs(wildcards):
    """What the baselines of a size and fold learn from (the training MR with its mask and cache,
    the training CT with its mask) and predict from (the test MR and caches)."""
    ts = training_set(wildcards)
    return {
        "test_mr": _files(test_subjects(wildcards), "mr"),
        "caches": test_caches(wildcards),
        "train_mr": _files(ts.mr, "mr"),
        "train_mr_mask": _files(ts.mr, "mask"),
        "train_mr_caches": preprocessed(ts.mr),
        "train_ct": _files(ts.ct, "ct"),
        "train_ct_mask": _files(ts.ct, "mask"),
    }


def baseline_subjects(wildcards):
    ts = training_set(wildcards)
    return {"test": test_subjects(wildcards), "mr": list(ts.mr), "ct": list(ts.ct)}


def qualitative_subject(wildcards=None):
    """The subject of figure 4: fold 0's first test subject, with its MR, CT, mask (and labels)."""
    subject = COHORT[FOLDS[0].test[0]]
    files = {"mr": str(subject.mr), "ct": str(subject.ct), "mask": str(subject.mask)}
    if LABELLED:
        files.update(labels=str(subject.labels), label_table=str(COHORT.labels_table))
    return files


#: every training run of the design, (size, model, fold, replicate), in the order of all_runs; the
#: seeds (splits.replicates) are for the comparisons between the two arms, so the paired supervised
#: reference, which no verdict compares, trains once per size and fold
RUNS = [
    (size, model, fold, rep)
    for size in SIZES
    for model in MODELS
    for fold in FOLD_IDS
    for rep in (REPLICATES if model in ARMS else REPLICATES[:1])
]


def all_runs(stage, filename):
    """results/<stage>/<size>/<model>/fold<k>/rep<r>/<filename> of every run, in RUNS order."""
    return [os.path.join(run_path(stage, None, *run), filename) for run in RUNS]


def all_run_tables(stage):
    """results/<stage>/<size>/<model>/fold<k>/rep<r>.csv of every run, in RUNS order."""
    return [f"{run_path(stage, None, *run)}.csv" for run in RUNS]


QUALITATIVE_MODELS = [m for m in (*ARMS, "reference_supervised") if m in MODELS]
#: stems of the figures drawn from the tables (those of experiment 2 only with label maps)
TABLE_FIGURES = [stem for key, stem in FIGURE_STEMS.items() if LABELLED or key not in LABEL_FIGURES]


FIGURES = f"{RESULTS}/figures"
SEGMENTATION_TABLE = [f"{RESULTS}/tables/segmentation_metrics.csv"] if LABELLED else []


def figure(stem, caption):
    """A figure's PNG, shown in the Snakemake report with its caption (report/<caption>.rst)."""
    return report(f"{FIGURES}/{stem}.png", caption=f"../report/{caption}.rst", category="Figures")


def qualitative_inputs(wildcards):
    """Synthetic CT of fold 0, replicate 0, at the largest size, per arm of the experiment."""
    return [run_path("synthetic_ct", size=max(SIZES), model=m, fold=0, replicate=0) for m in QUALITATIVE_MODELS]


def get_final_output():
    """Targets of `rule all`."""
    return [
        f"{RESULTS}/cohort/validation.tsv",
        *([f"{RESULTS}/tables/registration.csv"] if REGISTRATION != "none" else []),
        f"{RESULTS}/splits/splits.tsv",
        f"{RESULTS}/tables/synthesis_metrics.csv",
        *([f"{RESULTS}/tables/segmentation_metrics.csv"] if LABELLED else []),
        f"{RESULTS}/tables/statistics.csv",
        *[f"{RESULTS}/figures/{stem}.{ext}" for stem in [*TABLE_FIGURES, "qualitative_hip"] for ext in ("png", "pdf")],
        f"{RESULTS}/tables/provenance_summary.csv",
    ]


def front_page():
    """The report's front page: report/workflow.rst and, once the statistics job has written
    it, this run's verdict on the paper's findings (results/tables/findings.rst)."""
    page = Path(workflow.basedir) / "report" / "workflow.rst"
    verdict = Path(RESULTS) / "tables" / "findings.rst"
    if not verdict.exists():
        return str(page)
    combined = Path(".snakemake") / "mr2ct" / "report_front_page.rst"
    combined.parent.mkdir(parents=True, exist_ok=True)
    combined.write_text(f"{page.read_text()}\nFindings of this run\n--------------------\n\n{verdict.read_text()}")
    return str(combined.resolve())
