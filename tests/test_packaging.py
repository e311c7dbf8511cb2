"""The installable package: a wheel built from the repository carries every file the package reads."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.slow


def test_wheel_ships_the_schema_and_validates_the_default_config_outside_the_source_tree(tmp_path):
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wheel = next(out.glob("mr2ct-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "mr2ct/schemas/config.schema.yaml" in names
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.yaml").write_bytes((ROOT / "config.yaml").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(unpacked)}
    check = (
        "import mr2ct, mr2ct.config as c, pathlib; "
        f"assert pathlib.Path(mr2ct.__file__).is_relative_to(pathlib.Path(r'{unpacked}')), mr2ct.__file__; "
        "cfg = c.load_config('config.yaml'); print(cfg['train']['steps'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    cli = subprocess.run(
        [sys.executable, "-m", "mr2ct", "validate"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
    )
    assert cli.returncode == 0 and "config is valid" in cli.stdout, cli.stderr


def test_container_runs_the_pinned_stack_and_the_workflow_names_it():
    """The image (envs/mr2ct.def, envs/Dockerfile) installs exactly requirements.txt on Python 3.11,
    and every job of the workflow runs in it under --sdm apptainer (the Snakefile's container)."""
    for name in ("mr2ct.def", "Dockerfile"):
        text = (ROOT / "envs" / name).read_text()
        assert "python:3.11" in text and "pip install -r /opt/mr2ct/requirements.txt" in text, name
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().split()
    snakefile = (ROOT / "Snakefile").read_text()
    assert 'container: f"{workflow.basedir}/envs/mr2ct.sif"' in snakefile
    assert "envs/*.sif" in (ROOT / ".gitignore").read_text().split()
