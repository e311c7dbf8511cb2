"""Provenance records: what a job's record holds, how inputs are hashed, the job identity that
figures and child processes carry (stand-in jobs of tests/provenance_jobs.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from mr2ct.provenance import records as provenance  # noqa: E402
from mr2ct.provenance.audit import audit  # noqa: E402
from mr2ct.provenance.figure_identity import identity_metadata, read_png_text, stamp_png  # noqa: E402
from mr2ct.provenance.job_identity import ENV_IDENTITY, current_identity  # noqa: E402
from mr2ct.provenance.records import config_sha256  # noqa: E402

from .conftest import ROOT  # noqa: E402
from .provenance_jobs import (
    CONFIG,
    CONFIG_B,
    HAVE_GIT,
    Files,
    Job,
    _code,
    cohort_job,
    embedded_identity,
    figure_job,
    git,
    run_job,
    table_job,
)


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
    from mr2ct.provenance.audit import code_summary

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
