"""Provenance records and `mr2ct audit`, with stand-in Snakemake jobs (no Snakemake run).

A tmp folder is laid out like a workflow (Snakefile, workflow_scripts/, a git
commit) whose working directory holds ``data/`` (raw input) and ``results/``.
Three jobs are chained: raw file -> cohort (a table and a directory) -> metrics
table -> figure (PNG + PDF).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from mr2ct import provenance  # noqa: E402
from mr2ct.audit import add_audit_parser, audit, iter_tree, render_text  # noqa: E402
from mr2ct.figure_identity import PNG_KEYS, identity_metadata, read_png_text, stamp_png  # noqa: E402
from mr2ct.io import InputError  # noqa: E402
from mr2ct.job_identity import ENV_IDENTITY, current_identity  # noqa: E402
from mr2ct.provenance import ProvenanceError, begin_job, config_sha256, write_job_record  # noqa: E402

from .conftest import ROOT  # noqa: E402

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


def test_figure_lineage_reaches_cohort_raw_input_and_config(chain):
    report = audit(chain / "results/figures/mae.png")
    nodes = {node["path"]: node for _, node in iter_tree(report["tree"])}
    assert report["rule"] == "figure" and report["tree"]["path"] == "results/figures/mae.png"
    assert nodes["results/tables/metrics.csv"]["rule"] == "table"
    assert nodes["results/cohort/subjects.tsv"]["rule"] == "cohort"
    assert nodes["results/cohort/volumes"]["kind"] == "dir"
    assert nodes["data/raw.txt"]["rule"] is None  # a raw input: no producing record
    assert report["records"] == 3
    assert report["config"]["sha256"] == config_sha256(CONFIG)
    config_file = chain / report["config"]["file"]
    assert yaml.safe_load(config_file.read_text()) == CONFIG
    hint = report["reproduce"]["command"]
    assert hint.startswith("snakemake results/figures/mae.png ")
    assert hint.endswith(f"--configfile {report['config']['file']}")
    text = render_text(report)
    assert "results/cohort/subjects.tsv  [cohort " in text and "data/raw.txt  [source " in text
    if HAVE_GIT:
        head = subprocess.run(
            ["git", "-C", str(chain), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=600
        )
        assert report["code"]["commit"] == head.stdout.strip() and report["code"]["dirty"] is False


def test_record_has_the_job_description_and_relative_paths(chain):
    report = audit(chain / "results/tables/metrics.csv")
    record = json.loads((chain / report["record_file"]).read_text())
    assert record["rule"] == "table" and record["config"] == CONFIG and record["seed"] == 42
    assert record["script"]["path"] == "workflow_scripts/table.py"
    assert [i["path"] for i in record["inputs"]] == ["results/cohort/subjects.tsv", "results/cohort/volumes"]
    volumes = record["inputs"][1]
    assert volumes["names"] == ["volumes"] and {f["path"] for f in volumes["files"]} == {"S1/ct.bin", "S2.bin"}
    assert volumes["producer"]["rule"] == "cohort"
    assert record["outputs"][0]["sha256"] == provenance.sha256_file(chain / "results/tables/metrics.csv")
    assert record["resources"]["mem_mb"] == 500 and record["threads"] == 1
    assert {"python", "numpy", "snakemake"} <= set(record["software"])
    assert not any(str(chain) in json.dumps(entry) for entry in record["inputs"] + record["outputs"])
    # the table's sidecar is a copy of its record
    assert json.loads((chain / "results/tables/metrics.csv.prov.json").read_text()) == record


def test_verify_passes_on_untouched_results(chain, capsys):
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert report["ok"] and report["problems"] == []
    assert report["hashed_files"] == 6  # png, csv, tsv, the 2 files of the directory, raw input: each once
    assert cli(chain / "results/figures/mae.png", "--verify") == 0
    assert "verify  OK" in capsys.readouterr().out


def test_verify_names_a_modified_intermediate_file(chain, capsys):
    table = chain / "results/tables/metrics.csv"
    recorded = provenance.sha256_file(table)
    with open(table, "a") as handle:
        handle.write("S3,99\n")
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert not report["ok"]
    assert problems(report) == {("CHANGED", "results/tables/metrics.csv")}
    detail = report["problems"][0]["detail"]  # both hashes, so the reader can tell which version is which
    assert detail.startswith(f"sha256 {provenance.sha256_file(table)[:12]} differs from {recorded[:12]} recorded by ")
    assert cli(chain / "results/figures/mae.png", "--verify") == 1
    captured = capsys.readouterr()
    assert "CHANGED  results/tables/metrics.csv" in captured.out
    assert "results/tables/metrics.csv" in captured.err


def test_verify_names_deleted_files_also_inside_directories(chain):
    (chain / "results/cohort/subjects.tsv").unlink()
    (chain / "results/cohort/volumes/S1/ct.bin").unlink()
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert problems(report) == {
        ("MISSING", "results/cohort/subjects.tsv"),
        ("MISSING", "results/cohort/volumes/S1/ct.bin"),
    }
    (chain / "data/raw.txt").unlink()
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert ("MISSING", "data/raw.txt") in problems(report)


def test_directory_outputs_ignore_snakemake_bookkeeping_and_report_added_files(chain):
    """Snakemake adds .snakemake_timestamp to a directory output after the job's record was
    written: not the job's output, so neither recorded nor reported. A file put there later
    is ADDED, not a changed record."""
    (chain / "results/cohort/volumes/.snakemake_timestamp").write_text("")
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert report["ok"], report["problems"]
    (chain / "results/cohort/volumes/S3.bin").write_bytes(b"\x02" * 10)
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert problems(report) == {("ADDED", "results/cohort/volumes/S3.bin")}


def test_verify_catches_an_edit_that_keeps_size_and_modification_time(chain):
    """A same-size edit with the old mtime restored: only a content hash catches it."""
    target = chain / "results/cohort/volumes/S1/ct.bin"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert problems(report) == {("CHANGED", "results/cohort/volumes/S1/ct.bin")}


def test_verify_flags_an_upstream_file_remade_under_another_config_as_stale(chain, capsys):
    # the cohort is re-made under config B (same bytes) after the table used the config-A version
    cohort_job(chain, config=CONFIG_B)
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert problems(report) == {("STALE", "results/cohort/subjects.tsv"), ("STALE", "results/cohort/volumes")}
    assert cli(chain / "results/figures/mae.png", "--verify") == 1
    listed = ", ".join(f"{p['kind']} {p['path']}" for p in report["problems"])
    assert capsys.readouterr().err == f"mr2ct audit: 2 problem(s): {listed}\n"
    detail = next(p["detail"] for p in report["problems"] if p["path"] == "results/cohort/subjects.tsv")
    assert config_sha256(CONFIG_B)[:12] in detail and config_sha256(CONFIG)[:12] in detail
    # re-making the table and the figure under config B brings everything up to date
    table_job(chain, config=CONFIG_B)
    figure_job(chain, config=CONFIG_B)
    assert audit(chain / "results/figures/mae.png", verify=True)["ok"]


def test_upstream_kept_under_an_older_config_is_a_note_unless_strict(chain, capsys):
    # Snakemake keeps upstream outputs whose params did not change: only the figure is re-made under B
    figure_job(chain, config=CONFIG_B)
    report = audit(chain / "results/figures/mae.png", verify=True)
    assert report["ok"] and len(report["notes"]) == 1 and len(report["configs"]) == 2
    assert report["tree"]["config_sha256"] == config_sha256(CONFIG_B)
    strict = audit(chain / "results/figures/mae.png", verify=True, strict=True)
    assert problems(strict) == {("MIXED", "results/tables/metrics.csv")}
    assert cli(chain / "results/figures/mae.png", "--verify") == 0
    lines = capsys.readouterr().out.splitlines()  # only a node made under another config than the target names it
    assert "config" not in lines[0] and lines[1].endswith(f"  config {config_sha256(CONFIG)[:8]}")
    assert cli(chain / "results/figures/mae.png", "--verify", "--strict") == 1
    assert "MIXED results/tables/metrics.csv" in capsys.readouterr().err


def test_json_output_parses_and_matches_the_text(chain, capsys):
    assert cli(chain / "results/figures/mae.png", "--json", "--verify") == 0
    report = json.loads(capsys.readouterr().out)
    assert cli(chain / "results/figures/mae.png", "--verify") == 0
    text = capsys.readouterr().out
    nodes = list(iter_tree(report["tree"]))
    lines = text.splitlines()[: len(nodes)]
    for (depth, node), line in zip(nodes, lines):
        assert f"{node['path']}" in line and f"[{node['rule'] or 'source'} {node['sha256'][:8]}]" in line
        assert line.index(node["path"]) == 3 * depth
    assert report["record"] in text and report["config"]["sha256"][:16] in text
    assert report["reproduce"]["command"] in text


def test_paths_outside_results_or_without_record_give_clear_errors(chain, tmp_path):
    with pytest.raises(ProvenanceError, match="not inside a workflow's results/ folder"):
        audit(chain / "data/raw.txt")
    with pytest.raises(ProvenanceError, match="no provenance record"):
        audit(chain / "results/logs/whatever.log")
    with pytest.raises(ProvenanceError, match="not made by a recorded job"):
        # results/ holds an observed-only input when a raw file lives under results/
        (chain / "results/extra.txt").write_text("x")
        provenance.Layout(chain).index_file("results/extra.txt").write_text(
            json.dumps({"path": "results/extra.txt", "kind": "file", "record": None})
        )
        audit(chain / "results/extra.txt")
    bare = tmp_path / "other" / "results" / "x.csv"
    bare.parent.mkdir(parents=True)
    bare.write_text("a\n")
    with pytest.raises(ProvenanceError, match="holds no provenance records"):
        audit(bare)
    assert issubclass(ProvenanceError, InputError)  # the CLI reports it as `mr2ct audit: error: …`, exit 2


def test_copied_workflow_folder_still_audits_and_verifies(chain, tmp_path):
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(chain, copy)
    report = audit(copy / "results/figures/mae.png", verify=True)
    assert report["ok"] and report["workdir"] == str(copy) and report["reproduce"]["cwd"] == str(copy)
    (copy / "results/cohort/volumes/S2.bin").write_bytes(b"changed")
    report = audit(copy / "results/figures/mae.png", verify=True)
    assert problems(report) == {("CHANGED", "results/cohort/volumes/S2.bin")}
    assert audit(chain / "results/figures/mae.png", verify=True)["ok"]  # the original is untouched
    # relative target paths work from inside the copy
    cwd = os.getcwd()
    os.chdir(copy / "results")
    try:
        assert audit("figures/mae.png")["target"] == "results/figures/mae.png"
    finally:
        os.chdir(cwd)


def test_figures_carry_record_id_commit_and_config_hash(chain):
    report = audit(chain / "results/figures/mae.png")
    png = chain / "results/figures/mae.png"
    from PIL import Image

    with Image.open(png) as image:
        text = dict(image.text)
    assert text["mr2ct-record"] == report["record"]
    assert text["mr2ct-config-sha256"] == config_sha256(CONFIG)
    assert text["mr2ct-commit"] == report["code"]["commit"]
    assert embedded_identity(chain / "results/figures/mae.pdf") == {
        "record": report["record"],
        "commit": report["code"]["commit"],
        "config_sha256": config_sha256(CONFIG),
    }
    # the recorded hash is that of the stamped file
    assert audit(png, verify=True)["ok"]


def test_stamp_png_keeps_pixels_and_replaces_keys(tmp_path):
    from PIL import Image

    path = tmp_path / "x.png"
    pixels = (np.arange(48 * 32 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
    Image.fromarray(pixels).save(path)
    stamp_png(path, {"mr2ct-record": "r1", "note": "é ü"})
    stamp_png(path, {"mr2ct-record": "r2", "unicode": "→ ok"})
    assert read_png_text(path) == {"note": "é ü", "mr2ct-record": "r2", "unicode": "→ ok"}
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(image), pixels) and image.text["mr2ct-record"] == "r2"
    (tmp_path / "fake.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        stamp_png(tmp_path / "fake.png", {"k": "v"})


def test_identity_metadata_is_empty_outside_a_job(monkeypatch):
    monkeypatch.delenv(ENV_IDENTITY, raising=False)
    monkeypatch.setattr(provenance, "_CURRENT", None)
    assert identity_metadata("png") == {} and identity_metadata(".pdf") == {}


def test_inputs_reuse_the_producers_hash_and_ids_are_content_addressed(wf, monkeypatch):
    first = cohort_job(wf)
    assert cohort_job(wf) == first  # same inputs, config, code: same id (figures stay byte-identical)
    hashed = []
    real = provenance.sha256_file
    monkeypatch.setattr(provenance, "sha256_file", lambda p, *a: hashed.append(Path(p).name) or real(p, *a))
    table_job(wf)
    # the inputs (subjects.tsv, the directory's files) came from the cohort's index entries: only the output
    assert [h for h in hashed if not h.endswith(".py")] == ["metrics.csv"]
    hashed.clear()
    os.utime(wf / "results/cohort/subjects.tsv", ns=(1, 1))  # size/mtime differ from the record: re-hashed
    table_job(wf)
    assert "subjects.tsv" in hashed
    assert cohort_job(wf, config=CONFIG_B) != first


def test_raw_inputs_are_hashed_once_across_consumers(wf, monkeypatch):
    first = cohort_job(wf)
    hashed = []
    real = provenance.sha256_file
    monkeypatch.setattr(provenance, "sha256_file", lambda p, *a: hashed.append(Path(p).name) or real(p, *a))
    cohort_job(wf)
    assert "raw.txt" not in hashed  # the first consumer left an "observed" index entry
    other = Job(
        "table", Files("data/raw.txt"), Files("results/tables/raw.tsv"), CONFIG, scriptdir=str(wf / "workflow_scripts")
    )

    def work():
        (wf / "results/tables").mkdir(parents=True)
        (wf / "results/tables/raw.tsv").write_text("x\n")

    second = run_job(wf, other, work)
    assert second != first and "raw.txt" not in hashed
    observed = json.loads(provenance.Layout(wf).index_file("data/raw.txt").read_text())
    assert observed["observed_by"] == first and observed["record"] is None  # kept while the file is unchanged


def test_saved_config_reproduces_the_effective_config():
    from mr2ct.config import load_yaml, merge, validate_config

    base = load_yaml(ROOT / "config.yaml")
    effective = validate_config(merge(base, load_yaml(ROOT / "configs/tiny.yaml")))
    dumped = yaml.safe_load(yaml.safe_dump(json.loads(provenance.canonical_json(effective)), sort_keys=True))
    again = validate_config(merge(load_yaml(ROOT / "config.yaml"), dumped))
    assert config_sha256(again) == config_sha256(effective)


def test_audit_of_a_file_inside_a_directory_output(chain):
    report = audit(chain / "results/cohort/volumes/S1/ct.bin", verify=True)
    assert report["output"] == "results/cohort/volumes" and report["target"] == "results/cohort/volumes/S1/ct.bin"
    assert report["ok"] and "is a file of the directory output" in render_text(report)


def test_failed_job_writes_no_record(wf):
    job = Job(
        "cohort",
        Files(raw="data/raw.txt"),
        Files("results/cohort/subjects.tsv"),
        CONFIG,
        scriptdir=str(wf / "workflow_scripts"),
    )
    with pytest.raises(RuntimeError):
        with provenance.job_record(job, workdir=wf):
            raise RuntimeError("job failed")
    assert not (wf / "results/provenance/records").exists()
    assert current_identity() is None


def test_audit_of_many_records_is_fast(tmp_path):
    """~200 records (fan-in like the real DAG); verify hashes each distinct file once."""
    wf = tmp_path / "big"
    (wf / "data").mkdir(parents=True)
    code = {"workflow_root": None, "commit": "unknown", "dirty": None, "diff_sha256": None, "version": "0"}
    cwd = os.getcwd()
    os.chdir(wf)
    try:
        raw = []
        for i in range(20):
            raw.append(f"data/raw{i}.bin")
            (wf / raw[-1]).write_bytes(os.urandom(200_000))

        def job(rule, inputs, output, payload):
            sm = Job(rule, Files(*inputs), Files(output), CONFIG, wildcards={"i": output})
            ctx = begin_job(sm, workdir=wf, code=code)
            (wf / output).parent.mkdir(parents=True, exist_ok=True)
            (wf / output).write_bytes(payload)
            write_job_record(sm, ctx)

        caches = []
        for i in range(20):
            caches.append(f"results/pre/{i}.bin")
            job("pre", [raw[i], raw[(i + 1) % 20]], caches[-1], os.urandom(100_000))
        parts = []
        for i in range(170):
            parts.append(f"results/metrics/{i}.csv")
            job("metric", [caches[i % 20], caches[(i * 7) % 20], *raw[:5]], parts[-1], b"x,%d\n" % i)
        job("table", parts, "results/tables/all.csv", b"table\n")
        job("figure", ["results/tables/all.csv", *caches], "results/figures/f.png", b"not really a png")
    finally:
        os.chdir(cwd)
    start = time.perf_counter()
    report = audit(wf / "results/figures/f.png", verify=True)
    elapsed = time.perf_counter() - start
    assert report["ok"] and report["records"] == 192 and report["hashed_files"] == 20 + 20 + 170 + 2
    assert elapsed < 10
    assert len(render_text(report).splitlines()) > 192


def test_a_missing_upstream_record_is_reported(chain, capsys):
    table = audit(chain / "results/tables/metrics.csv")["record_file"]
    (chain / table).unlink()
    report = audit(chain / "results/figures/mae.png")
    assert ("NORECORD", "results/tables/metrics.csv") in problems(report)
    assert cli(chain / "results/figures/mae.png") == 1
    assert "NORECORD results/tables/metrics.csv" in capsys.readouterr().out
    with pytest.raises(ProvenanceError, match="record .* is missing"):
        audit(chain / "results/tables/metrics.csv")


def test_canonical_json_and_config_hash_do_not_depend_on_key_order():
    a = {"train": {"lr": 2e-4, "steps": 10}, "seed": 1, "models": ["cyclegan", "cyclegan_gc"]}
    b = {"seed": 1, "models": ["cyclegan", "cyclegan_gc"], "train": {"steps": 10, "lr": 2e-4}}
    assert provenance.canonical_json(a) == provenance.canonical_json(b)
    assert config_sha256(a) == config_sha256(b)
    assert config_sha256(a) != config_sha256({**a, "models": ["cyclegan_gc", "cyclegan"]})  # list order matters


@pytest.mark.skipif(not HAVE_GIT, reason="git is not installed")
def test_code_version_sees_an_edit_to_a_tracked_file_and_hashes_its_content(wf):
    clean = provenance.code_version(wf)
    assert clean["dirty"] is False and clean["diff_sha256"] is None and len(clean["commit"]) == 40
    git(wf, "config", "status.showUntrackedFiles", "no")  # a user's setting may hide untracked files
    (wf / "workflow_scripts" / "new.py").write_text("# not yet committed\n")
    assert provenance.code_version(wf)["dirty"] is True  # an untracked file counts all the same
    (wf / "workflow_scripts" / "new.py").unlink()
    script = wf / "workflow_scripts" / "table.py"
    script.write_text("# table adapter, edited\n")
    first = provenance.code_version(wf)
    script.write_text("# table adapter, edited otherwise\n")
    second = provenance.code_version(wf)
    assert first["dirty"] and second["dirty"] and first["commit"] == clean["commit"]
    assert first["diff_sha256"] != second["diff_sha256"]  # the content of the edit, not only the file name


def test_workflow_root_is_found_in_either_snakemake_layout(tmp_path):
    flat, nested = tmp_path / "flat", tmp_path / "nested"
    (flat / "rules").mkdir(parents=True)
    (flat / "Snakefile").write_text("")
    (nested / "workflow" / "rules").mkdir(parents=True)
    (nested / "workflow" / "Snakefile").write_text("")
    assert provenance.find_workflow_root(flat / "rules") == flat
    assert provenance.find_workflow_root(None, nested / "workflow" / "rules") == nested / "workflow"
    assert provenance.find_workflow_root(nested / "results") == nested
    assert provenance.find_workflow_root(tmp_path / "elsewhere") is None


def test_record_names_the_code_that_made_it(chain):
    report = audit(chain / "results/tables/metrics.csv")
    record = json.loads((chain / report["record_file"]).read_text())
    code = provenance.code_version(chain)
    assert record["code"]["commit"] == code["commit"] and record["code"]["dirty"] == code["dirty"]
    # an input made by another job names that job's record and code, from the index of its outputs
    producer = record["inputs"][1]["producer"]
    assert producer["rule"] == "cohort" and producer["commit"] == code["commit"]
    assert producer["config_sha256"] == config_sha256(CONFIG) and producer["record"]


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


def test_cli_text_ends_once_and_names_rule_wildcards_end_time_and_commit_and_stops_at_a_depth(chain, capsys):
    figure_job(chain, wildcards={"size": "6", "model": "cyclegan_gc"})
    target = chain / "results/figures/mae.png"
    report = audit(target)
    assert cli(target) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and not out.endswith("\n\n")
    lines = out.splitlines()
    assert (
        f"record  {report['record_file']}  (rule figure, size=6, model=cyclegan_gc, ended {report['ended_at']})"
        in lines
    )
    code = report["code"]
    assert any(line.startswith(f"code    mr2ct {code['version']}, commit {code['commit']}") for line in lines)
    if HAVE_GIT:
        assert f"  git -C {chain} checkout {code['commit']}" in lines
    assert cli(target, "--depth", "1") == 0
    shallow = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert shallow[0].startswith("results/figures/mae.png  [figure ")
    assert shallow[1].startswith("└─ results/tables/metrics.csv  [table ")
    assert shallow[2:] == ["   └─ … 2 input(s) not shown"]


def test_json_report_is_indented_and_every_node_has_the_same_keys(chain, capsys):
    assert cli(chain / "results/figures/mae.png", "--json") == 0
    out = capsys.readouterr().out
    report = json.loads(out)
    assert len(out.splitlines()) > 40  # one value per line: readable, and diffs between audits stay small
    keys = {frozenset(node) for _, node in iter_tree(report["tree"])}
    assert keys == {
        frozenset({"path", "kind", "sha256", "rule", "record", "config_sha256", "seen", "problems", "inputs"})
    }
    assert report["seconds"] >= 0


def test_verify_names_a_directory_output_replaced_by_a_file(chain):
    volumes = chain / "results/cohort/volumes"
    shutil.rmtree(volumes)
    volumes.write_bytes(b"\x01" * 5000)
    report = audit(chain / "results/tables/metrics.csv", verify=True)
    assert problems(report) == {("CHANGED", "results/cohort/volumes")}
    assert "was a dir" in report["problems"][0]["detail"] and "now a file" in report["problems"][0]["detail"]


def test_upstream_remade_by_other_uncommitted_code_is_stale_and_notes_name_both_commits(wf):
    """The same commit with other uncommitted edits is another code version: an upstream file
    re-made by it is STALE for the consumer that used the earlier version."""
    first, second = "1" * 40, "2" * 40
    cohort_job(wf, code=_code(first, "a" * 64))
    table_job(wf, code=_code(second))
    report = audit(wf / "results/tables/metrics.csv", verify=True)
    assert report["ok"] and len(report["notes"]) == 1  # mixed code versions: a note unless strict
    config = config_sha256(CONFIG)[:12]
    assert (
        f"under config {config} / commit {first[:12]}, used by table under config {config} / commit {second[:12]}"
        in (report["notes"][0])
    )
    cohort_job(wf, code=_code(first, "b" * 64))
    report = audit(wf / "results/tables/metrics.csv", verify=True)
    stale = {p["path"]: p["detail"] for p in report["problems"] if p["kind"] == "STALE"}
    assert set(stale) == {"results/cohort/subjects.tsv", "results/cohort/volumes"}
    assert f"(config {config}, commit {first[:12]}) after record " in stale["results/cohort/subjects.tsv"]


def test_reproduce_hint_uses_the_local_profile_and_checks_out_the_recorded_commit(chain):
    (chain / "profiles" / "local").mkdir(parents=True)
    report = audit(chain / "results/figures/mae.png")
    hint = report["reproduce"]
    assert "--profile profiles/local" in hint["command"] and "--cores" not in hint["command"]
    assert "--forcerun figure" in hint["note"] and "--forceall" in hint["note"]
    if HAVE_GIT:
        assert hint["checkout"] == f"git -C {chain} checkout {report['code']['commit']}"


def test_positional_and_named_params_are_recorded_as_given(wf):
    cases = [
        (Files("bilinear", 3), {"_positional": ["bilinear", 3]}),
        (Files(seed=5, mode="x"), {"seed": 5, "mode": "x"}),
    ]
    for i, (params, expected) in enumerate(cases):
        out = f"results/tables/p{i}.tsv"
        job = Job(
            "table", Files("data/raw.txt"), Files(out), CONFIG, params=params, scriptdir=str(wf / "workflow_scripts")
        )

        def work(out=out):
            (wf / "results/tables").mkdir(parents=True, exist_ok=True)
            (wf / out).write_text("x\n")

        run_job(wf, job, work)
        record = json.loads((wf / audit(wf / out)["record_file"]).read_text())
        assert record["params"] == expected


def test_job_identity_reaches_child_processes_and_ends_with_the_record(wf, monkeypatch):
    seen = {}

    def work():
        seen["job"] = current_identity()
        seen["environment"] = json.loads(os.environ[ENV_IDENTITY])
        (wf / "results/tables").mkdir(parents=True, exist_ok=True)
        (wf / "results/tables/t.tsv").write_text("x\n")

    job = Job(
        "table", Files("data/raw.txt"), Files("results/tables/t.tsv"), CONFIG, scriptdir=str(wf / "workflow_scripts")
    )
    record_id = run_job(wf, job, work)
    assert seen["job"]["record"] == record_id and seen["environment"] == seen["job"]
    assert current_identity() is None and ENV_IDENTITY not in os.environ
    monkeypatch.setenv(ENV_IDENTITY, json.dumps(seen["environment"]))  # what a child process sees
    assert current_identity() == seen["job"]
    monkeypatch.setenv(ENV_IDENTITY, "not json")
    assert current_identity() is None


def test_records_name_the_host_and_the_instruction_set_torch_dispatches_to():
    import platform

    import torch

    host = provenance.host_info()
    assert host["torch_cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert (host["platform"], host["machine"], host["cpu_count"]) == (
        platform.platform(),
        platform.machine(),
        os.cpu_count(),
    )


def test_numpy_values_hash_like_the_python_values_they_hold():
    values = {"lr": np.float64(2e-4), "steps": np.int64(10), "flags": np.array([True, False]), "gc": np.float32(0.5)}
    assert provenance.canonical_json(values) == provenance.canonical_json(
        {"lr": 2e-4, "steps": 10, "flags": [True, False], "gc": 0.5}
    )


def test_code_summary_has_one_row_per_code_and_config_version_with_its_records_and_time_span(wf):
    """Records are read in file-name order (rule first), so each group here has a record read
    first that is not the one that started first (group 2) or ended last (group 1)."""
    from mr2ct.audit import code_summary

    first, second = "1" * 40, "2" * 40
    ids = [
        cohort_job(wf, code=_code(first)),
        table_job(wf, code=_code(first)),
        table_job(wf, code=_code(second, "b" * 64)),
        figure_job(wf, code=_code(second, "b" * 64)),
    ]
    records = [json.loads(provenance.Layout(wf).record_file(i).read_text()) for i in ids]
    rows = code_summary(wf)
    config = config_sha256(CONFIG)[:12]
    assert [{k: row[k] for k in ("commit", "dirty", "diff_sha256", "version", "config_sha256")} for row in rows] == [
        {"commit": first, "dirty": False, "diff_sha256": "", "version": "0", "config_sha256": config},
        {"commit": second, "dirty": True, "diff_sha256": "b" * 12, "version": "0", "config_sha256": config},
    ]
    assert [(row["records"], row["rules"]) for row in rows] == [(2, "cohort table"), (2, "figure table")]
    assert (rows[0]["first_started"], rows[0]["last_ended"]) == (records[0]["started_at"], records[1]["ended_at"])
    assert (rows[1]["first_started"], rows[1]["last_ended"]) == (records[2]["started_at"], records[3]["ended_at"])
    figure_job(wf, config=CONFIG_B, code=_code(second, "b" * 64))
    assert [row["config_sha256"] for row in code_summary(wf)][-1] == config_sha256(CONFIG_B)[:12]


def test_snakemake_command_runs_the_workflow_of_this_checkout_by_default(tmp_path):
    from mr2ct.workflow import snakemake_command

    cmd = snakemake_command(tmp_path, "-n", "--cores", "1")
    assert cmd[1:] == [
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "-n",
        "--cores",
        "1",
    ]
    assert snakemake_command(tmp_path, root=tmp_path / "wf")[4] == str(tmp_path / "wf" / "Snakefile")


def test_reproduce_hint_runs_the_recorded_workflow_in_another_working_directory(wf, tmp_path):
    """``snakemake --directory work``: the records live in ``work``, the Snakefile elsewhere."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copy(wf / "data" / "raw.txt", work / "data" / "raw.txt")
    job = Job(
        "table", Files("data/raw.txt"), Files("results/tables/t.tsv"), CONFIG, scriptdir=str(wf / "workflow_scripts")
    )
    cwd = os.getcwd()
    os.chdir(work)
    try:
        context = begin_job(job, script=wf / "workflow_scripts" / "table.py")
        (work / "results/tables").mkdir(parents=True)
        (work / "results/tables/t.tsv").write_text("x\n")
        write_job_record(job, context)
    finally:
        os.chdir(cwd)
    hint = audit(work / "results/tables/t.tsv")["reproduce"]
    assert hint["cwd"] == str(work)
    assert hint["command"].startswith(
        f"snakemake results/tables/t.tsv -s {wf}/Snakefile --directory {work} --cores all "
    )
