"""Stand-in Snakemake jobs for the provenance and audit tests (no Snakemake run).

A tmp folder is laid out like a workflow (Snakefile, workflow_scripts/, a git commit) whose
working directory holds ``data/`` (raw input) and ``results/``. Three jobs are chained: raw file
-> cohort (a table and a directory) -> metrics table -> figure (PNG + PDF).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from mr2ct.provenance.audit import add_audit_parser  # noqa: E402
from mr2ct.provenance.figure_identity import PNG_KEYS, identity_metadata, read_png_text  # noqa: E402
from mr2ct.provenance.records import begin_job, write_job_record  # noqa: E402

CONFIG = {"seed": 42, "data": {"subjects": 2}, "train": {"steps": 10, "lr": 2.0e-4}, "models": ["a", "b"]}
CONFIG_B = {**CONFIG, "data": {"subjects": 3}}
HAVE_GIT = shutil.which("git") is not None


_PDF_IDENTITY = re.compile(rb"mr2ct-(record|commit|config-sha256)=([A-Za-z0-9_.\-]+)")


def embedded_identity(path: str | os.PathLike) -> dict[str, str]:
    """The identity a figure carries: PNG text chunks or PDF Keywords (``{}`` when none)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        text = read_png_text(path)
        return {field: text[key] for field, key in PNG_KEYS.items() if key in text}
    if path.suffix.lower() == ".pdf":
        found = {m.group(1).decode(): m.group(2).decode() for m in _PDF_IDENTITY.finditer(path.read_bytes())}
        return {field: found[key[len("mr2ct-") :]] for field, key in PNG_KEYS.items() if key[len("mr2ct-") :] in found}
    return {}


class Files(list):
    """Stand-in for Snakemake's Namedlist: a list, with named entries as attributes and items()."""

    def __init__(self, *positional, **named):
        values = [os.fspath(p) if isinstance(p, os.PathLike) else p for p in positional]
        self._names = {}
        for name, value in named.items():
            start = len(values)
            values.extend(
                os.fspath(v) if isinstance(v, os.PathLike) else v
                for v in (value if isinstance(value, list) else [value])
            )
            self._names[name] = (start, len(values) if isinstance(value, list) else None)
        super().__init__(values)
        for name, (start, end) in self._names.items():
            setattr(self, name, self[start:end] if end is not None else self[start])

    def items(self):
        for name in self._names:
            yield name, getattr(self, name)


class Job:
    """The attributes of the ``snakemake`` script object that provenance reads."""

    def __init__(self, rule, input, output, config, params=None, wildcards=None, scriptdir=None):
        self.rule = rule
        self.input = input
        self.output = output
        self.params = params if params is not None else Files()
        self.wildcards = Files(**(wildcards or {}))
        self.config = config
        self.threads = 1
        self.resources = Files(mem_mb=500, _cores=1, runtime=5)
        self.log = Files(f"results/logs/{rule}.log")
        self.scriptdir = scriptdir


def git(folder, *args):
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        timeout=600,
    )


@pytest.fixture
def wf(tmp_path) -> Path:
    """An empty workflow folder (also the working directory) with one git commit."""
    wf = tmp_path / "wf"
    (wf / "workflow_scripts").mkdir(parents=True)
    (wf / "Snakefile").write_text("# stand-in\n")
    for rule in ("cohort", "table", "figure"):
        (wf / "workflow_scripts" / f"{rule}.py").write_text(f"# {rule} adapter\n")
    (wf / ".gitignore").write_text("results/\ndata/\n")
    (wf / "data").mkdir()
    (wf / "data" / "raw.txt").write_text("raw measurements 1 2 3\n")
    if HAVE_GIT:
        git(wf, "init", "-q")
        git(wf, "add", ".")
        git(wf, "commit", "-q", "-m", "init")
    return wf


def run_job(wf: Path, job: Job, work, **kwargs) -> str:
    """What workflow.run will do: begin, work, write the record; returns the record id."""
    cwd = os.getcwd()
    os.chdir(wf)  # Snakemake runs a job in the working directory
    try:
        context = begin_job(job, script=wf / "workflow_scripts" / f"{job.rule}.py", **kwargs)
        work()
        write_job_record(job, context)
    finally:
        os.chdir(cwd)
    return context.record_id


def cohort_job(wf: Path, config=CONFIG, content="subject\nS1\nS2\n", **kwargs) -> str:
    job = Job(
        "cohort",
        Files(raw="data/raw.txt"),
        Files(table="results/cohort/subjects.tsv", volumes="results/cohort/volumes"),
        config,
        params=Files(seed=config["seed"]),
        scriptdir=str(wf / "workflow_scripts"),
    )

    def work():
        (wf / "results/cohort/volumes/S1").mkdir(parents=True, exist_ok=True)
        (wf / "results/cohort/subjects.tsv").write_text(content)
        (wf / "results/cohort/volumes/S1/ct.bin").write_bytes(bytes(range(256)) * 64)
        (wf / "results/cohort/volumes/S2.bin").write_bytes(b"\x01" * 5000)

    return run_job(wf, job, work, **kwargs)


def table_job(wf: Path, config=CONFIG, **kwargs) -> str:
    job = Job(
        "table",
        Files("results/cohort/subjects.tsv", volumes="results/cohort/volumes"),
        Files("results/tables/metrics.csv"),
        config,
        scriptdir=str(wf / "workflow_scripts"),
    )

    def work():
        subjects = (wf / "results/cohort/subjects.tsv").read_text().split()[1:]
        lines = ["subject,mae"] + [f"{s},{10 + i}.5" for i, s in enumerate(subjects)]
        (wf / "results/tables").mkdir(parents=True, exist_ok=True)
        (wf / "results/tables/metrics.csv").write_text("\n".join(lines) + "\n")

    return run_job(wf, job, work, **kwargs)


def figure_job(wf: Path, config=CONFIG, wildcards=None, **kwargs) -> str:
    job = Job(
        "figure",
        Files(table="results/tables/metrics.csv"),
        Files(png="results/figures/mae.png", pdf="results/figures/mae.pdf"),
        config,
        params=Files(seed=config["seed"]),
        wildcards=wildcards,
        scriptdir=str(wf / "workflow_scripts"),
    )

    def work():
        (wf / "results/figures").mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot([1, 2, 3], [3, 1, 2])
        # the PNG without identity metadata (write_job_record stamps it), the PDF as save_figure will do
        fig.savefig(wf / "results/figures/mae.png", dpi=50)
        fig.savefig(wf / "results/figures/mae.pdf", metadata=identity_metadata("pdf"))
        plt.close(fig)

    return run_job(wf, job, work, **kwargs)


@pytest.fixture
def chain(wf) -> Path:
    cohort_job(wf)
    table_job(wf)
    figure_job(wf)
    return wf


def cli(*argv) -> int:
    parser = argparse.ArgumentParser(prog="mr2ct")
    add_audit_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["audit", *map(str, argv)])
    return args.func(args)


def problems(report) -> set[tuple[str, str]]:
    return {(p["kind"], p["path"]) for p in report["problems"]}


# ---------------------------------------------------------------------------


def _code(commit: str, diff: str | None = None) -> dict:
    """What :func:`provenance.code_version` returns, for a given commit and uncommitted diff."""
    dirty = diff is not None
    return {
        "workflow_root": None,
        "commit": commit,
        "dirty": dirty,
        "diff_sha256": diff,
        "package": "mr2ct",
        "version": "0",
    }
