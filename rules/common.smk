# The one place that reads the config and the cohort: validation, subjects,
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

from mr2ct.cohort import cohort_from_config, validate_changed
from mr2ct.config import load_yaml, merge, validate_config
from mr2ct.splits import splits_from_config, statistics_warning

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"

# Files given with --configfile are overlays on the default config.yaml (Snakemake
# replaces the `configfile:` when --configfile is used, so merge explicitly).
# Fails here, before any job, naming the config key / file / subject at fault.
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
FOLD_IDS = [f.fold for f in FOLDS]
# experiment 2 needs reference labels (the phantom has them; other cohorts when labels_table is set)
LABELLED = COHORT.labels_table is not None


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    size="|".join(str(s) for s in SIZES),
    model="|".join(MODELS),
    fold="|".join(str(f) for f in FOLD_IDS),


def subject_files(wildcards):
    """The raw volumes of one subject (labels only when the cohort has them)."""
    return {k: str(v) for k, v in COHORT[wildcards.subject].paths().items()}


def cohort_files(wildcards=None):
    """Every raw volume of the cohort, plus its label table."""
    files = [str(p) for s in COHORT.subjects for p in s.paths().values()]
    if COHORT.labels_table is not None:
        files.append(str(COHORT.labels_table))
    return files


def preprocessed(subjects):
    return [f"{RESULTS}/preprocessed/{s}.npz" for s in subjects]


def run_path(stage, wildcards=None, size="{size}", model="{model}", fold="{fold}"):
    """results/<stage>/<size>/<model>/fold<fold>: the experiment design, readable from `ls results`."""
    return f"{RESULTS}/{stage}/{size}/{model}/fold{fold}"


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

    return asdict(TrainSettings.from_config(config, wildcards.model, int(wildcards.size), int(wildcards.fold)))


def segmentation_settings(wildcards):
    from dataclasses import asdict
    from mr2ct.cohort import read_label_table
    from mr2ct.settings import SegmentationSettings

    if COHORT.generated:  # the phantom's table is written by a job; its ids are fixed
        from mr2ct.phantom import LABELS as table
    else:
        table = read_label_table(COHORT.labels_table)
    n_classes = max(table) + 1
    return asdict(SegmentationSettings.from_config(config, int(wildcards.fold), n_classes))


def test_caches(wildcards):
    return preprocessed(FOLDS[int(wildcards.fold)].test)


# Config that a job reads through mr2ct.evaluation.Design: passed as params so that
# changing it reruns the job (Snakemake tracks params, not the config a script reads).
DESIGN_PARAMS = {k: config[k] for k in ("seed", "data", "splits", "preprocess")}


def files_of(subjects):
    return [str(p) for s in subjects for p in COHORT[s].paths().values()]


def test_files(wildcards):
    """Raw volumes of the fold's test subjects (the references of every score)."""
    fold = wildcards["fold"] if isinstance(wildcards, dict) else wildcards.fold
    return files_of(FOLDS[int(fold)].test) + ([str(COHORT.labels_table)] if COHORT.labels_table else [])


def reference_training_files(wildcards):
    """What the baselines learn from: the training subjects' volumes and caches, and the test caches."""
    ts = training_set(wildcards)
    fold = FOLDS[int(wildcards.fold)]
    return files_of(ts.subjects) + preprocessed(ts.mr) + preprocessed(fold.test)


def all_runs_files(stage, suffix):
    return [
        f"{RESULTS}/{stage}/{size}/{model}/fold{fold}{suffix}"
        for size in SIZES
        for model in MODELS
        for fold in FOLD_IDS
    ]


def all_runs(stage, filename=""):
    return [
        os.path.join(run_path(stage, size=size, model=model, fold=fold), filename)
        for size in SIZES
        for model in MODELS
        for fold in FOLD_IDS
    ]


QUALITATIVE_MODELS = [m for m in ("cyclegan", "cyclegan_gc", "reference_supervised") if m in MODELS]
TABLE_FIGURES = [
    "mae_vs_training_size",
    "psnr_vs_training_size",
    "ssim_vs_training_size",
    "boundary_mae_vs_training_size",
    "training_curves",
    *(["dice_by_structure", "surface_distance_by_structure"] if LABELLED else []),
]


FIGURES = f"{RESULTS}/figures"
SEGMENTATION_TABLE = [f"{RESULTS}/tables/segmentation_metrics.csv"] if LABELLED else []


def figure(stem, caption):
    """A figure's PNG, shown in the Snakemake report with its caption (report/<caption>.rst)."""
    return report(f"{FIGURES}/{stem}.png", caption=f"../report/{caption}.rst", category="Figures")


def qualitative_inputs(wildcards):
    """Synthetic CT of fold 0 at the largest size, per arm of the experiment."""
    return [run_path("synthetic_ct", size=max(SIZES), model=m, fold=0) for m in QUALITATIVE_MODELS]


def get_final_output():
    """Targets of `rule all`."""
    return [
        f"{RESULTS}/cohort/validation.tsv",
        f"{RESULTS}/splits/splits.tsv",
        f"{RESULTS}/tables/synthesis_metrics.csv",
        *([f"{RESULTS}/tables/segmentation_metrics.csv"] if LABELLED else []),
        f"{RESULTS}/tables/statistics.csv",
        *[f"{RESULTS}/figures/{stem}.{ext}" for stem in [*TABLE_FIGURES, "qualitative_hip"] for ext in ("png", "pdf")],
        f"{RESULTS}/tables/provenance_summary.csv",
    ]
