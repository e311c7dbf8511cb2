# The one place that reads the config and the cohort: validation, subjects,
# folds, wildcard constraints and input functions. Rules never index tables.
import os
import re
import sys
from pathlib import Path

# Jobs (local, conda envs, SLURM) import the package from the workflow folder;
# a pip-installed mr2ct in the active environment works the same.
_BASEDIR = str(Path(workflow.basedir))
if _BASEDIR not in sys.path:
    sys.path.insert(0, _BASEDIR)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_BASEDIR, os.environ.get("PYTHONPATH")) if p)

from mr2ct.cohort import cohort_from_config
from mr2ct.config import load_yaml, merge, validate_config
from mr2ct.splits import splits_from_config

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
SUBJECTS = COHORT.ids
FOLDS = splits_from_config(SUBJECTS, config)
SIZES = sorted(config["splits"]["sizes"])
MODELS = config["models"]
FOLD_IDS = [f.fold for f in FOLDS]


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    size=r"\d+",
    model="|".join(MODELS),
    fold=r"\d+",


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


def get_final_output():
    """Targets of `rule all`: data stage now; training and evaluation extend this."""
    return [
        f"{RESULTS}/cohort/validation.tsv",
        f"{RESULTS}/splits/splits.tsv",
        *preprocessed(SUBJECTS),
    ]
