"""The SLURM profile (profiles/slurm) on a real single-node cluster started by the fixture.

The cluster (tests/slurm_cluster.py) is Debian's slurmctld + slurmd + munge, installed with
apt-get when missing; every test skips with the reason when it cannot start (not root, no
apt-get, daemons not coming up). The profile is used as a user would after editing its one
site block: the site values are given as MR2CT_SLURM_* environment variables, which the
profile reads. Two command-line options belong to this cluster, not to the profile:
``--slurm-status-command squeue`` (no accounting database here, so ``sacct`` cannot answer)
and a short first status check, to keep the tests quick.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT, snakemake_cmd
from .slurm_cluster import JobRecorder, SlurmCluster, SlurmUnavailable, ensure_installed

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TINY = ROOT / "configs" / "tiny.yaml"
PROFILE = ROOT / "profiles" / "slurm"
# the one documented site block of the profile, filled in for the test cluster
SITE = {
    "MR2CT_SLURM_CPU_PARTITION": "debug",
    "MR2CT_SLURM_GPU_PARTITION": "debug",
    "MR2CT_SLURM_ACCOUNT": "",
    "MR2CT_SLURM_GPU_MODEL": "",
    "MR2CT_SLURM_TRAIN_RUNTIME": "30",
    "MR2CT_SLURM_SEGMENTATION_RUNTIME": "30",
    "MR2CT_SLURM_GPU_MEM_MB": "3000",
    "MR2CT_SLURM_MAX_JOBS": "20",
}
CLUSTER_ARGS = [
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "2",
    "--slurm-keep-successful-logs",
]
RUN_TIMEOUT = 40 * 60


def _short_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slurm")
    if len(str(root / "munge" / "munge.socket")) > 100:  # unix socket paths are limited to 108 bytes
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="mr2ct-slurm-"))
    return root


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running cluster (node idle) with a job recorder; torn down and checked for leftovers."""
    cluster = SlurmCluster(_short_root(tmp_path_factory))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    print(f"\nSLURM cluster up in {cluster.bring_up_seconds:.1f} s ({cluster.root})")
    recorder = JobRecorder(cluster).start()
    cluster.recorder = recorder
    yield cluster
    recorder.stop()
    cluster.stop()
    leftovers = cluster.leftovers()
    assert not leftovers, f"processes left after tearing the cluster down: {leftovers}"


def profile_env(cluster: SlurmCluster) -> dict[str, str]:
    env = {k: v for k, v in cluster.env.items() if not k.startswith("MR2CT_SLURM_")}
    env.update(SITE)
    return env


# targets come first: --configfile and --config take every word that follows them


def slurm_snakemake_cmd(workdir: Path, *targets: str, config: tuple[str, ...] = ()) -> list[str]:
    return snakemake_cmd(
        workdir, *targets, "--profile", str(PROFILE), *CLUSTER_ARGS, "--configfile", str(TINY), *config
    )


def start_local(workdir: Path, *targets: str, config: tuple[str, ...] = ()) -> subprocess.Popen:
    """The same workflow without SLURM (2 local cores), started in the background: the SLURM
    runs mostly wait for the scheduler, so the reference runs beside them."""
    cmd = snakemake_cmd(workdir, *targets, "--cores", "2", "--configfile", str(TINY), *config)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MR2CT_SLURM_"))}
    workdir.mkdir(parents=True, exist_ok=True)
    return run_logged(cmd, workdir, env, workdir / "local.log")


@contextlib.contextmanager
def stopped_at_exit(*procs: subprocess.Popen):
    """Terminate what is still running when the block ends (a failed assertion): snakemake
    cancels its SLURM jobs on SIGTERM."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=600)


def finish_local(proc: subprocess.Popen, workdir: Path) -> None:
    rc = wait(proc, workdir / "local.log")
    assert rc == 0, f"local snakemake failed ({rc}):\n{(workdir / 'local.log').read_text()[-6000:]}"


def run_logged(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait(proc: subprocess.Popen, log: Path, timeout: float = RUN_TIMEOUT) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # snakemake cancels its SLURM jobs on the way out
        proc.wait(60)
        pytest.fail(f"snakemake did not finish within {timeout} s:\n{log.read_text()[-5000:]}")


def jobs_by_rule(records: dict[str, dict[str, str]], since: int = 0) -> dict[str, list[dict[str, str]]]:
    """SLURM jobs (id > since) by the Snakemake rule or group in their comment (rule_<name>[_wildcards_...])."""
    grouped: dict[str, list[dict[str, str]]] = {}
    for job_id, job in sorted(records.items(), key=lambda kv: int(kv[0])):
        if int(job_id) <= since:
            continue
        name = re.sub(r"_wildcards_.*$", "", job.get("Comment", "")).removeprefix("rule_")
        grouped.setdefault(name, []).append(job)
    return grouped


# --------------------------------------------------------------------------- the fixture itself


def test_not_root_gives_a_clear_skip_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SlurmUnavailable, match="needs root"):
        SlurmCluster(tmp_path).start()


def test_missing_slurm_without_apt_gives_a_clear_skip_reason(monkeypatch):
    from . import slurm_cluster

    monkeypatch.setattr(slurm_cluster, "_find", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(SlurmUnavailable, match="apt-get is not available"):
        slurm_cluster.ensure_installed()


def test_daemons_that_do_not_come_up_give_a_clear_skip_reason_and_no_leftovers(tmp_path_factory):
    class Broken(SlurmCluster):
        def write_config(self):
            super().write_config()
            with open(self.conf, "a") as conf:  # slurmctld refuses this without slurmdbd
                conf.write("AccountingStorageTRES=gres/gpu\n")

    if os.geteuid() != 0:
        pytest.skip("no SLURM cluster: starting slurmd/slurmctld needs root")
    try:
        ensure_installed()
    except SlurmUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    cluster = Broken(_short_root(tmp_path_factory))
    with pytest.raises(SlurmUnavailable, match="(?s)slurmctld exited.*slurmdbd is required"):
        cluster.start()
    assert cluster.leftovers() == []


def test_cluster_stops_without_leftovers(tmp_path_factory):
    """A second, short-lived cluster: a running job is cancelled and every daemon exits."""
    cluster = SlurmCluster(_short_root(tmp_path_factory))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no SLURM cluster: {exc}")
    try:
        job = cluster.run("sbatch", "--parsable", "-o", "/dev/null", "--wrap", "sleep 300").stdout.strip()
        deadline = time.monotonic() + 60
        while (
            time.monotonic() < deadline
            and cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() != "RUNNING"
        ):
            time.sleep(0.5)
        assert cluster.run("squeue", "-h", "-j", job, "-o", "%T").stdout.strip() == "RUNNING"
    finally:
        cluster.stop()
    assert cluster.leftovers() == []
    pids = [str(p.pid) for p in cluster.procs.values()]
    assert subprocess.run(["ps", "-p", ",".join(pids)], capture_output=True, timeout=600).returncode != 0  # none alive


# --------------------------------------------------------------------------- the workflow on SLURM


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """The whole tiny DAG through the profile, and a local run of the same config up to the
    synthesis table; returns both workdirs and the SLURM jobs of the profile run."""
    workdir = tmp_path_factory.mktemp("slurm_wf")
    local_dir = tmp_path_factory.mktemp("local_wf")
    first = max((int(j) for j in slurm_cluster.recorder.poll()), default=0)
    log = workdir / "snakemake.log"
    started = time.monotonic()
    proc = run_logged(slurm_snakemake_cmd(workdir), workdir, profile_env(slurm_cluster), log)
    local = start_local(local_dir, "results/tables/synthesis_metrics.csv")
    with stopped_at_exit(proc, local):
        rc = wait(proc, log)
        print(f"\ntiny workflow on SLURM: {time.monotonic() - started:.0f} s")
        finish_local(local, local_dir)
    assert rc == 0, f"snakemake --profile profiles/slurm failed ({rc}):\n{log.read_text()[-8000:]}"
    jobs = jobs_by_rule(slurm_cluster.recorder.poll(), since=first)
    return workdir, jobs, local_dir


def test_tiny_workflow_on_slurm_matches_a_local_run(slurm_run):
    workdir, jobs, local_dir = slurm_run
    results = workdir / "results"
    for path in (
        "tables/synthesis_metrics.csv",
        "tables/segmentation_metrics.csv",
        "tables/statistics.csv",
        "figures/qualitative_hip.png",
        "figures/training_curves.pdf",
    ):
        assert (results / path).stat().st_size > 0, path
    assert all(j["JobState"] == "COMPLETED" for js in jobs.values() for j in js), jobs
    table = "results/tables/synthesis_metrics.csv"
    on_slurm, local = pd.read_csv(workdir / table), pd.read_csv(local_dir / table)
    assert len(on_slurm) == 36
    pd.testing.assert_frame_equal(on_slurm, local, check_exact=True)
    assert (workdir / table).read_bytes() == (local_dir / table).read_bytes()  # bit-identical


def test_training_jobs_were_given_a_gpu_and_cpu_jobs_were_not(slurm_run):
    _, jobs, _ = slurm_run
    assert len(jobs["train"]) == 6 and len(jobs["train_segmentation"]) == 2, sorted(jobs)
    for job in jobs["train"] + jobs["train_segmentation"]:
        assert job["TresPerJob"] == "gres:gpu:1", job  # sbatch --gpus=1
        assert job.get("JOB_GRES") == "gpu:1", job  # allocated on the node
        assert job["Partition"] == "debug" and job["TimeLimit"] == "00:30:00" and "mem=3000M" in job["TRES"], job
    cpu_jobs = [j for name, js in jobs.items() if not name.startswith("train") for j in js]
    assert cpu_jobs
    for job in cpu_jobs:
        assert "gpu" not in job.get("TresPerJob", "") + job.get("TresPerNode", "") + job["TRES"], job


def test_small_jobs_were_grouped_into_one_core_slurm_jobs(slurm_run):
    _, jobs, _ = slurm_run
    # 6 phantom subjects in groups of 4, 6 preprocessed subjects in one group of 10, 6 runs in pairs
    assert len(jobs["phantom_phantom_subject"]) == 2
    assert len(jobs["preprocess_preprocess"]) == 1
    evaluate = [j for name, js in jobs.items() if name.startswith("evaluate_run") for j in js]
    assert len(evaluate) == 3
    for job in jobs["phantom_phantom_subject"] + jobs["preprocess_preprocess"] + evaluate:
        assert job["NumCPUs"] == "1", job  # the plugin runs a group's jobs one after the other
    assert not any(name in jobs for name in ("phantom_subject", "preprocess", "synthesize", "synthesis_metrics"))


def test_cancelled_training_job_resumes_from_its_checkpoint(slurm_cluster, slurm_run, tmp_path):
    """scancel a training job mid-run: the profile's retries resubmit it, it resumes from
    checkpoint.pt and ends identical to an uninterrupted (local) run."""
    workdir, _, _ = slurm_run
    run = "results/models/2/cyclegan_gc/fold0/rep0"
    target = f"{run}/generator.pt"
    config = ("--config", "train={steps: 300, checkpoint_every: 20, eval_every: 50}")
    slurm_dir, local_dir = tmp_path / "slurm", tmp_path / "local"
    for d in (slurm_dir, local_dir):  # the finished tiny run, without this training run
        shutil.copytree(workdir, d, symlinks=True)
        shutil.rmtree(d / run)
        (d / "results/logs/train/2/cyclegan_gc/fold0/rep0.log").unlink()

    first = max((int(j) for j in slurm_cluster.recorder.poll()), default=0)
    log = slurm_dir / "resume.log"
    proc = run_logged(slurm_snakemake_cmd(slurm_dir, target, config=config), slurm_dir, profile_env(slurm_cluster), log)
    local = start_local(local_dir, target, config=config)  # the same run, uninterrupted
    with stopped_at_exit(proc, local):
        checkpoint = slurm_dir / run / "checkpoint.pt"
        deadline = time.monotonic() + 600
        while not checkpoint.exists():
            assert proc.poll() is None, f"snakemake ended before the first checkpoint:\n{log.read_text()[-5000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 10 min"
            time.sleep(0.1)
        running = [j for j in jobs_by_rule(slurm_cluster.recorder.poll(), since=first).get("train", [])]
        assert len(running) == 1 and running[0]["JobState"] == "RUNNING", running
        cancelled = running[0]["JobId"]
        slurm_cluster.run("scancel", cancelled)
        assert not (slurm_dir / target).exists()
        rc = wait(proc, log)
        assert rc == 0, f"snakemake failed after the cancelled job ({rc}):\n{log.read_text()[-8000:]}"

        train_jobs = jobs_by_rule(slurm_cluster.recorder.poll(), since=first)["train"]
        assert [j["JobState"] for j in train_jobs] == ["CANCELLED", "COMPLETED"], train_jobs
        assert train_jobs[0]["JobId"] == cancelled
        # the cancelled attempt started from scratch (its records are in its SLURM log; Snakemake
        # starts the rule's log afresh for the next attempt), the next one resumed
        first_attempt = next((slurm_dir / ".snakemake/slurm_logs/rule_train").glob(f"*/{cancelled}.log")).read_text()
        assert "step 0: validation MAE" in first_attempt and "resumed" not in first_attempt
        assert "CANCELLED" in first_attempt
        train_log = (slurm_dir / "results/logs/train/2/cyclegan_gc/fold0/rep0.log").read_text()
        resumed = re.findall(r"resumed from \S+checkpoint\.pt at step (\d+)", train_log)
        assert len(resumed) == 1 and 20 <= int(resumed[0]) < 300, train_log

        finish_local(local, local_dir)
    assert "resumed" not in (local_dir / "results/logs/train/2/cyclegan_gc/fold0/rep0.log").read_text()
    for name in ("losses.tsv", "validation.tsv"):
        assert (slurm_dir / run / name).read_bytes() == (local_dir / run / name).read_bytes(), name
    import torch

    a = torch.load(slurm_dir / target, weights_only=True)
    b = torch.load(local_dir / target, weights_only=True)
    assert a["selected_step"] == b["selected_step"] and a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
