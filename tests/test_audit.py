"""`mr2ct audit`: lineage of an output, `--verify` (what changed, and nothing else), text and
JSON reports, reproduce hints (stand-in jobs of tests/provenance_jobs.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import yaml  # noqa: E402

from mr2ct.data.io import InputError  # noqa: E402
from mr2ct.provenance import records as provenance  # noqa: E402
from mr2ct.provenance.audit import audit, iter_tree, render_text  # noqa: E402
from mr2ct.provenance.records import ProvenanceError, begin_job, config_sha256, write_job_record  # noqa: E402

from .provenance_jobs import (
    CONFIG,
    CONFIG_B,
    HAVE_GIT,
    Files,
    Job,
    _code,
    cli,
    cohort_job,
    figure_job,
    problems,
    table_job,
)


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


def test_audit_of_a_file_inside_a_directory_output(chain):
    report = audit(chain / "results/cohort/volumes/S1/ct.bin", verify=True)
    assert report["output"] == "results/cohort/volumes" and report["target"] == "results/cohort/volumes/S1/ct.bin"
    assert report["ok"] and "is a file of the directory output" in render_text(report)


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
