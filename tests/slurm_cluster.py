"""A throw-away single-node SLURM cluster for the tests (Debian's slurmctld, slurmd, munge).

Everything lives in one temporary folder: ``slurm.conf`` and ``gres.conf``, a private
munge key and socket, state, spool, pid and log files. The daemons run in the
foreground as children of the test process, on free TCP ports, so nothing of the
machine's own configuration (``/etc/slurm``, ``/run/munge``) is read or touched (apart
from installing the Debian packages when they are missing);
client commands find the cluster through ``SLURM_CONF`` (see :attr:`SlurmCluster.env`).

Job status: no accounting database is started. ``sacct`` cannot work without one
(``AccountingStorageType=accounting_storage/none``; Slurm 22.05 has no ``filetxt``
accounting storage any more), so the executor plugin is run with
``--slurm-status-command squeue``; ``MinJobAge=600`` keeps finished jobs visible to
``squeue``/``scontrol`` for ten minutes, longer than the plugin's longest interval
between status checks (180 s).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sinfo", "squeue", "sbatch", "srun", "scancel", "scontrol")
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
PARTITION = "debug"


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here; the message is the reason to skip."""


def _find(name: str) -> str | None:
    """Path of a program on PATH or in /usr/sbin (not on a normal user's PATH), else None."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    return found


def _which_all(names) -> list[str]:
    return [n for n in names if _find(n) is None]


def ensure_installed(timeout: float = 600) -> None:
    """Install the Debian packages with apt-get when a daemon or client is missing."""
    missing = _which_all(DAEMONS + CLIENTS)
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"SLURM is not installed ({', '.join(missing)} missing) and installing it needs root")
    if _find("apt-get") is None:
        raise SlurmUnavailable(f"SLURM is not installed ({', '.join(missing)} missing) and apt-get is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    before = {pid for name in DAEMONS for pid in _pids(name)}
    try:
        _apt_install(env, timeout)
    finally:
        # without a policy-rc.d denying it, the packages' scripts start the system's munged
        # (and try slurmd/slurmctld): stop what the installation started
        for pid in {pid for name in DAEMONS for pid in _pids(name)} - before:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    missing = _which_all(DAEMONS + CLIENTS)
    if missing:
        raise SlurmUnavailable(f"{', '.join(missing)} still missing after installing {', '.join(PACKAGES)}")


def _apt_install(env: dict[str, str], timeout: float) -> None:
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
    ):
        try:
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s") from None
        if result.returncode != 0:
            raise SlurmUnavailable(f"`{' '.join(cmd)}` failed: {(result.stderr or result.stdout).strip()[-500:]}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise SlurmUnavailable("cannot read MemTotal from /proc/meminfo")


class SlurmCluster:
    """One node (this machine, ``CPUs=2``, one fake GPU), one partition ``debug``."""

    def __init__(self, root: Path, cpus: int = 2):
        self.root = Path(root)
        self.cpus = cpus
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        self.bin = self.root / "bin"
        # SLURM_CONF for the client commands; the wrappers in bin/ also carry it, because the
        # jobstep executor drops every SLURM_* variable before its `srun` inside a job (on a real
        # cluster srun reads /etc/slurm/slurm.conf instead).
        self.env = {
            **os.environ,
            "SLURM_CONF": str(self.conf),
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        for var in list(self.env):  # never inherit an outer allocation
            if var.startswith(("SLURM_JOB", "SLURM_STEP", "SBATCH_", "SRUN_")):
                self.env.pop(var)
        self.bring_up_seconds: float | None = None

    # -- configuration
    def write_config(self) -> None:
        for d in ("munge", "state", "spool", "log"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        real_memory = int(_mem_total_mb() * 0.8)
        ctld_port, slurmd_port = _free_port(), _free_port()
        self.conf.write_text(f"""\
# generated by tests/slurm_cluster.py: a single-node cluster for the tests
ClusterName=mr2cttest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "log" / "slurmctld.log"}
SlurmdLogFile={self.root / "log" / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MailProg=/bin/true
MinJobAge=600
KillWait=5
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={real_memory} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        (self.root / "gres.conf").write_text("AutoDetect=off\nName=gpu File=/dev/null\n")
        self.bin.mkdir(exist_ok=True)
        for name in CLIENTS + ("sacct",):
            real = _find(name)
            if real:
                wrapper = self.bin / name
                wrapper.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {real} "$@"\n')
                wrapper.chmod(0o755)

    # -- processes
    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "wb")
        self.procs[name] = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, preexec_fn=_die_with_parent
        )
        out.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with {proc.returncode} at start-up:\n{self.logs(name)}")

    def logs(self, name: str) -> str:
        parts = []
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def start(self, timeout: float = 60) -> None:
        """Start munged, slurmctld and slurmd; return when the node is idle (else SlurmUnavailable)."""
        if os.geteuid() != 0:
            raise SlurmUnavailable("starting slurmd/slurmctld needs root")
        if not Path("/proc/meminfo").exists():
            raise SlurmUnavailable("not a Linux machine")
        ensure_installed()
        started = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()  # whatever came up goes down again (the reason is in the exception)
            raise
        self.bring_up_seconds = time.monotonic() - started

    def _start(self, timeout: float) -> None:
        self.write_config()
        munged = _find("munged")
        self._spawn(
            "munged",
            [
                munged,
                "--foreground",
                "--force",
                f"--socket={self.socket}",
                f"--key-file={self.root / 'munge' / 'munge.key'}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
            ],
        )
        self._wait(lambda: self.socket.exists(), 15, "munged did not create its socket")
        self._spawn("slurmctld", [_find("slurmctld"), "-D", "-f", str(self.conf)])
        self._wait(
            lambda: self.run("scontrol", "ping", check=False).stdout.count("UP") > 0,
            30,
            "slurmctld does not answer `scontrol ping`",
        )
        self._spawn("slurmd", [_find("slurmd"), "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(lambda: self.node_state() == "idle", timeout, "the node did not become idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.5)
        raise SlurmUnavailable(f"{what} within {timeout:.0f} s:\n" + "\n".join(self.logs(n) for n in DAEMONS))

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", check=False).stdout.strip()

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        result = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    # -- jobs
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (``scontrol show job``, finished ones for MinJobAge)."""
        out = self.run("scontrol", "show", "job", "-o", "-d", check=False).stdout
        return [parse_record(line) for line in out.splitlines() if line.startswith("JobId=")]

    def active_job_ids(self) -> list[str]:
        out = self.run("squeue", "-h", "-o", "%i", check=False).stdout
        return out.split()

    def cancel_all(self, timeout: float = 60) -> None:
        ids = self.active_job_ids()
        if ids:
            self.run("scancel", *ids, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (self.active_job_ids() or _pids("slurmstepd")):
            time.sleep(0.5)

    def stop(self, timeout: float = 30) -> None:
        """Cancel every job, stop the daemons (slurmd, slurmctld, munged) and wait for them to exit."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except (OSError, subprocess.SubprocessError):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def leftovers(self) -> list[str]:
        """Our daemons or any job step still alive (should be empty after :meth:`stop`)."""
        alive = [f"{name} (pid {p.pid})" for name, p in self.procs.items() if p.poll() is None]
        return alive + [f"slurmstepd (pid {pid})" for pid in _pids("slurmstepd")]


class JobRecorder:
    """Polls ``scontrol show job`` in a thread and keeps the last record of every job seen.

    slurmctld forgets a finished job after MinJobAge; the recorder keeps it for the tests.
    """

    def __init__(self, cluster: SlurmCluster, interval: float = 3.0):
        self.cluster = cluster
        self.interval = interval
        self.records: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slurm-job-recorder", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> dict[str, dict[str, str]]:
        try:
            jobs = self.cluster.jobs()
        except (OSError, subprocess.SubprocessError):
            jobs = []
        with self._lock:
            for job in jobs:
                self.records[job["JobId"]] = job
            return dict(self.records)

    def start(self) -> JobRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the test process dies without tearing down."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _pids(name: str) -> list[int]:
    result = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, timeout=600)
    return [int(p) for p in result.stdout.split()]


def parse_record(line: str) -> dict[str, str]:
    """``Key=Value Key=Value ...`` of ``scontrol show ... -o`` into a dict (values without spaces)."""
    record = {}
    for token in line.split():
        key, sep, value = token.partition("=")
        if sep:
            record[key] = value
    return record
