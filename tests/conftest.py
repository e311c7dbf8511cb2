"""Shared fixtures: a tiny phantom cohort generated once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mr2ct.data.cohort import SubjectFiles
from mr2ct.data.phantom import PhantomSettings, write_cohort
from mr2ct.data.preprocess import PreprocessSettings, preprocess_to_cache
from mr2ct.workflow import snakemake_command

ROOT = Path(__file__).resolve().parents[1]

#: fixtures of support modules shared by several test modules (helpers are imported by name)
pytest_plugins = ["tests.ingestion_support", "tests.provenance_jobs"]


def snakemake_cmd(workdir, *args: str) -> list[str]:
    """:func:`mr2ct.workflow.snakemake_command` on this checkout's workflow."""
    return snakemake_command(workdir, *args, root=ROOT)


TINY_SETTINGS = PhantomSettings(matrix=(112, 80), spacing=(4.0, 4.0, 6.0))


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Four small phantom subjects (seed 7) in ``<tmp>/cohort``; treat as read-only."""
    out = tmp_path_factory.mktemp("tiny") / "cohort"
    write_cohort(out, n_subjects=4, seed=7, settings=TINY_SETTINGS, progress=False, jobs=1)
    return out


@pytest.fixture(scope="session")
def caches(tiny_cohort, tmp_path_factory) -> list[Path]:
    """Preprocessing caches (32² slices) of the four ``tiny_cohort`` subjects, in subject order; read-only."""
    out = tmp_path_factory.mktemp("caches")
    paths = []
    for folder in sorted(p for p in tiny_cohort.iterdir() if p.is_dir()):
        files = SubjectFiles(folder.name, *(folder / f"{m}.nii.gz" for m in ("mr", "ct", "mask", "labels")))
        paths.append(preprocess_to_cache(files, PreprocessSettings(image_size=32), out / f"{folder.name}.npz"))
    return paths


def changed_copy(cache, folder, key="mr"):
    """A copy of a preprocessing cache, same file name, with one modality changed non-linearly."""
    folder.mkdir(parents=True, exist_ok=True)
    with np.load(cache) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = (np.abs(arrays[key]) ** 0.5 * np.sign(arrays[key])).astype(arrays[key].dtype)
    np.savez(folder / cache.name, **arrays)
    return folder / cache.name
