"""Shared fixtures: a tiny phantom cohort generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mr2ct.phantom import PhantomSettings, write_cohort

ROOT = Path(__file__).resolve().parents[1]
TINY_SETTINGS = PhantomSettings(matrix=(112, 80), spacing=(4.0, 4.0, 6.0))


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    """Four small phantom subjects (seed 7) in ``<tmp>/cohort``; treat as read-only."""
    out = tmp_path_factory.mktemp("tiny") / "cohort"
    write_cohort(out, n_subjects=4, seed=7, settings=TINY_SETTINGS, progress=False, jobs=1)
    return out
