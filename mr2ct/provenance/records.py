"""Provenance records for every output of the workflow.

Every Snakemake job (through :func:`mr2ct.workflow.run`) writes one *record*:
the rule, wildcards, script, params, effective config and its hash, seed, code
version (git commit, dirty flag), software versions, host, threads/resources,
start/end time, and every input and output file with its SHA-256 (directories:
every file inside, recursively). Layout under ``results/provenance/``::

    records/<record-id>.json                the record of one job
    index/<output path under results>.prov.json
                                            output path -> record (a small pointer
                                            with the file's sha256/size/mtime)
    config-<hash12>.yaml                    an effective config, re-usable with
                                            ``snakemake --configfile``

Tables (outputs under ``results/tables/``) also get a sidecar copy of their
record, ``<table>.prov.json``, so a table shared on its own still says where it
came from. Figures carry their record id, commit and config hash in their
metadata (PNG text chunks, PDF Subject/Keywords).

Paths are stored relative to the workflow's working directory (the folder that
holds ``results/``), so a copied results folder still audits.

*Record ids* are content addressed: ``<rule>-<16 hex>`` of the SHA-256 over the
rule, wildcards, params, config hash, code version, script hash and the SHA-256
of every input. The id is known when the job starts (figures embed it) and an
identical re-run gets the identical id, so figures stay byte-reproducible.

*Hashes are computed once*: an output is hashed when its job ends; a consumer
reuses the hash from the producer's index entry when the file's size and
``mtime_ns`` still match (inputs produced outside the workflow get an
``observed`` index entry the first time they are hashed). ``audit --verify``
always re-hashes, each distinct file once.

The audit of these records (``mr2ct audit``) is :mod:`mr2ct.provenance.audit`; the identity that
figures carry is :mod:`mr2ct.provenance.figure_identity`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from mr2ct.data.io import InputError
from mr2ct.provenance.figure_identity import stamp_pngs
from mr2ct.provenance.job_identity import publish, withdraw

__all__ = [
    "JobContext",
    "Layout",
    "ProvenanceError",
    "begin_job",
    "canonical_json",
    "code_version",
    "config_sha256",
    "fingerprint",
    "job_record",
    "note",
    "sha256_file",
    "write_job_record",
]

SCHEMA = "mr2ct.provenance/1"
RESULTS = "results"
PROVENANCE = "provenance"
#: outputs under these folders of results/ get a ``<file>.prov.json`` sidecar (a copy of the record)
SIDECAR_FOLDERS = ("tables",)
SIDECAR_SUFFIX = ".prov.json"
INDEX_SUFFIX = ".prov.json"
EXTERNAL_INDEX = "+outside"  # index entries of inputs outside results/ (named by path hash)
BUFFER_BYTES = 8 << 20
#: PNG text-chunk keywords of a figure's identity
SOFTWARE = (
    "torch",
    "snakemake",
    "numpy",
    "scipy",
    "nibabel",
    "pandas",
    "matplotlib",
    "scikit-image",
    "pyyaml",
    "pillow",
)
UNKNOWN = "unknown"


class ProvenanceError(InputError):
    """No record, or a path that cannot be audited; the message names the path."""


# ---------------------------------------------------------------------------
# canonical JSON, hashes, fingerprints


def _jsonable(value: Any) -> Any:
    """Plain JSON types for params/config/resources (deterministic, no memory addresses)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        with contextlib.suppress(Exception):
            return _jsonable(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        with contextlib.suppress(Exception):
            return _jsonable(value.tolist())
    return f"<{type(value).__name__}>"


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 text: the same data always gives the same string."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_sha256(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a config dict."""
    return _sha256_text(canonical_json(config))


def sha256_file(path: str | os.PathLike, buffer_bytes: int = BUFFER_BYTES) -> str:
    """SHA-256 of a file, streamed through one reusable buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(buffer_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            n = handle.readinto(buffer)
            if not n:
                break
            digest.update(view[:n])
    return digest.hexdigest()


#: files Snakemake itself adds to directory outputs after the job ended (not the job's output)
SNAKEMAKE_BOOKKEEPING = ".snakemake"


def _dir_digest(files: Iterable[Mapping[str, Any]]) -> str:
    lines = sorted(f"{f['path']}\0{f['sha256']}\n" for f in files)
    return _sha256_text("".join(lines))


def _stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _cached_sha(cache: Mapping[str, Any] | None, size: int, mtime_ns: int) -> str | None:
    if cache and cache.get("sha256") and cache.get("size") == size and cache.get("mtime_ns") == mtime_ns:
        return cache["sha256"]
    return None


def fingerprint(path: str | os.PathLike, cached: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``kind``, ``sha256``, ``size``, ``mtime_ns`` of a file, or of a directory with ``files`` inside.

    ``cached`` is a previous fingerprint of the same path (e.g. from the
    producer's index entry): a file whose size and mtime_ns match it is not
    read again. A directory's sha256 is that of its sorted (path, sha256) list,
    without Snakemake's bookkeeping files (``.snakemake_timestamp``).
    Returns ``{"kind": "missing"}`` for a path that does not exist.
    """
    path = Path(path)
    if path.is_dir():
        known = {f["path"]: f for f in (cached or {}).get("files", [])} if (cached or {}).get("kind") == "dir" else {}
        files = []
        for folder, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for name in sorted(filenames):
                if name.startswith(SNAKEMAKE_BOOKKEEPING):
                    continue
                full = Path(folder) / name
                rel = full.relative_to(path).as_posix()
                size, mtime_ns = _stat(full)
                sha = _cached_sha(known.get(rel), size, mtime_ns) or sha256_file(full)
                files.append({"path": rel, "sha256": sha, "size": size, "mtime_ns": mtime_ns})
        return {"kind": "dir", "sha256": _dir_digest(files), "size": sum(f["size"] for f in files), "files": files}
    if not path.exists():
        return {"kind": "missing"}
    size, mtime_ns = _stat(path)
    cached_file = cached if (cached or {}).get("kind", "file") == "file" else None
    sha = _cached_sha(cached_file, size, mtime_ns) or sha256_file(path)
    return {"kind": "file", "sha256": sha, "size": size, "mtime_ns": mtime_ns}


# ---------------------------------------------------------------------------
# layout: where records live, relative paths


def _atomic_write_text(path: Path, text: str) -> None:
    from mr2ct.data.io import atomic_write_text  # lazy: keeps `mr2ct audit` light

    atomic_write_text(path, text)


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class Layout:
    """The provenance folders of one working directory (the folder holding ``results/``)."""

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(os.path.abspath(workdir))
        self.results = self.workdir / RESULTS
        self.root = self.results / PROVENANCE
        self.records = self.root / "records"
        self.index = self.root / "index"

    @classmethod
    def for_target(cls, path: str | os.PathLike) -> tuple[Layout, str]:
        """The layout of the results folder holding ``path``, and ``path`` as stored in records."""
        target = Path(os.path.abspath(path))
        bare = None
        for parent in target.parents:
            if parent.name == RESULTS:
                if not (parent / PROVENANCE).is_dir():
                    bare = bare or parent
                    continue
                layout = cls(parent.parent)
                stored = layout.rel(target)
                if stored.startswith(f"{RESULTS}/{PROVENANCE}/"):
                    raise ProvenanceError(f"{path}: provenance files are not outputs of the workflow")
                return layout, stored
        if bare is not None:
            raise ProvenanceError(
                f"{path}: {bare} holds no provenance records ({RESULTS}/{PROVENANCE}/ is missing); "
                "re-run the workflow with provenance enabled"
            )
        raise ProvenanceError(
            f"{path}: not inside a workflow's {RESULTS}/ folder; audit takes an output under {RESULTS}/ "
            f"(e.g. {RESULTS}/figures/mae_vs_training_size.png)"
        )

    def rel(self, path: str | os.PathLike) -> str:
        """A path as stored: relative to the working directory (POSIX), absolute when outside it."""
        text = os.fspath(path)
        full = os.path.normpath(text if os.path.isabs(text) else os.path.join(self.workdir, text))
        if _is_within(full, str(self.workdir)):
            return Path(os.path.relpath(full, self.workdir)).as_posix()
        return Path(full).as_posix()

    def abs(self, stored: str) -> Path:
        return Path(stored) if os.path.isabs(stored) else self.workdir / stored

    def index_file(self, stored: str) -> Path:
        prefix = f"{RESULTS}/"
        if not os.path.isabs(stored) and stored.startswith(prefix) and ".." not in Path(stored).parts:
            return self.index / (stored[len(prefix) :] + INDEX_SUFFIX)
        return self.index / EXTERNAL_INDEX / (_sha256_text(stored)[:32] + INDEX_SUFFIX)

    def record_file(self, record_id: str) -> Path:
        return self.records / f"{record_id}.json"

    def config_file(self, sha: str) -> str:
        return f"{RESULTS}/{PROVENANCE}/config-{sha[:12]}.yaml"

    def read_index(self, stored: str) -> dict[str, Any] | None:
        entry = _read_json(self.index_file(stored))
        return entry if entry and entry.get("path") == stored else None

    def owner(self, stored: str) -> tuple[str, dict[str, Any]] | None:
        """The index entry of ``stored``, or of the recorded directory output that contains it."""
        candidate = stored
        while True:
            entry = self.read_index(candidate)
            if entry is not None and (candidate == stored or entry.get("kind") == "dir"):
                return candidate, entry
            parent = Path(candidate).parent.as_posix()
            if parent in (candidate, ".", "/", RESULTS) or not parent:
                return None
            candidate = parent


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProvenanceError(f"{path}: unreadable provenance file ({exc})") from exc


# ---------------------------------------------------------------------------
# code, software, host


def _git(root: Path, *args: str) -> str | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, env=env, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "replace") if out.returncode == 0 else None


def find_workflow_root(*starts: str | os.PathLike | None) -> Path | None:
    """The first folder holding a ``Snakefile`` at or above one of ``starts``."""
    for start in starts:
        if not start:
            continue
        folder = Path(os.path.abspath(start))
        for candidate in (folder, *folder.parents):
            if (candidate / "Snakefile").is_file() or (candidate / "workflow" / "Snakefile").is_file():
                return candidate
    return None


def code_version(root: str | os.PathLike | None) -> dict[str, Any]:
    """Git commit of the workflow folder, whether it has uncommitted changes, and the package version.

    ``diff_sha256`` hashes ``git status --porcelain`` and ``git diff HEAD`` of the
    folder: two dirty runs with the same value ran the same tracked code.
    Outside a git checkout (or without git) commit is ``"unknown"`` and dirty ``None``.
    """
    info: dict[str, Any] = {
        "workflow_root": str(root) if root else None,
        "commit": UNKNOWN,
        "dirty": None,
        "diff_sha256": None,
        "package": "mr2ct",
        "version": _package_version(),
    }
    if root is None:
        return info
    head = _git(Path(root), "rev-parse", "HEAD")
    if not head:
        return info
    info["commit"] = head.strip()
    status = _git(Path(root), "status", "--porcelain=v1", "--untracked-files=normal", "--", ".")
    if status is None:
        return info
    info["dirty"] = bool(status.strip())
    if info["dirty"]:
        diff = _git(Path(root), "diff", "HEAD", "--binary", "--no-ext-diff", "--", ".") or ""
        info["diff_sha256"] = _sha256_text(status + "\0" + diff)
    return info


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("mr2ct")
    except metadata.PackageNotFoundError:
        from mr2ct import __version__

        return __version__


@functools.lru_cache(maxsize=1)
def _installed_versions() -> tuple[tuple[str, str], ...]:
    from importlib import metadata

    found = []
    for name in SOFTWARE:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def software_versions() -> dict[str, str]:
    """Python and the installed versions of the main packages (from metadata: nothing is imported)."""
    versions = {"python": platform.python_version(), **dict(_installed_versions())}
    torch = sys.modules.get("torch")  # the running build (e.g. +cpu / +cu121) when already imported
    if torch is not None and getattr(torch, "__version__", None):
        versions["torch"] = str(torch.__version__)
    return versions


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def host_info() -> dict[str, Any]:
    info = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "pid": os.getpid(),
    }
    model = _cpu_model()
    if model:
        info["cpu_model"] = model
    torch = sys.modules.get("torch")
    if torch is not None:  # the instruction set torch's CPU kernels dispatch to: results depend on it
        with contextlib.suppress(Exception):
            info["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
    for var in (
        "SLURM_JOB_ID",
        "SLURM_ARRAY_TASK_ID",
        "CUDA_VISIBLE_DEVICES",
        "ATEN_CPU_CAPABILITY",
        "ONEDNN_MAX_CPU_ISA",
    ):
        if os.environ.get(var):
            info[var.lower()] = os.environ[var]
    return info


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


# ---------------------------------------------------------------------------
# the snakemake object


def _items(obj: Any) -> list[tuple[str, Any]]:
    if obj is None:
        return []
    if isinstance(obj, Mapping):
        return [(str(k), v) for k, v in obj.items()]
    if hasattr(obj, "items"):
        return [(str(k), v) for k, v in obj.items()]
    return []


def _files(obj: Any) -> list[tuple[str, list[str]]]:
    """Unique paths of a Snakemake file list, in order, each with the names it is listed under."""
    if obj is None:
        return []
    names: dict[str, list[str]] = {}
    for name, value in _items(obj):
        for path in value if isinstance(value, (list, tuple)) else [value]:
            names.setdefault(os.fspath(path), []).append(name)
    paths = list(obj.values()) if isinstance(obj, Mapping) else list(obj)
    out: dict[str, list[str]] = {}
    for path in paths:
        for p in path if isinstance(path, (list, tuple)) else [path]:
            out.setdefault(os.fspath(p), names.get(os.fspath(p), []))
    return list(out.items())


def _params(obj: Any) -> dict[str, Any]:
    named = dict(_items(obj))
    if not named and obj is not None and not isinstance(obj, Mapping):
        values = list(obj)
        return {"_positional": _jsonable(values)} if values else {}
    return _jsonable(named)


def _seed(params: Mapping[str, Any], config: Mapping[str, Any]) -> Any:
    if "seed" in params:
        return params["seed"]
    for value in params.values():
        if isinstance(value, Mapping) and "seed" in value:
            return value["seed"]
    return config.get("seed")


def _script(snakemake: Any, script: str | os.PathLike | None) -> str | None:
    if script:
        return os.path.abspath(script)
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    scriptdir = getattr(snakemake, "scriptdir", None)
    if main_file and scriptdir and _is_within(os.path.abspath(main_file), os.path.abspath(scriptdir)):
        return os.path.abspath(main_file)
    return None


# ---------------------------------------------------------------------------
# one job: begin, (figures embed the identity), write the record


@dataclasses.dataclass
class JobContext:
    """What :func:`begin_job` learned when the job started; :func:`write_job_record` completes it."""

    record_id: str
    rule: str
    layout: Layout
    started_at: str
    started_perf: float
    wildcards: dict[str, Any]
    params: dict[str, Any]
    config: dict[str, Any]
    config_sha256: str
    code: dict[str, Any]
    script: dict[str, Any] | None
    inputs: list[dict[str, Any]]
    extra_outputs: list[str] = dataclasses.field(default_factory=list)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def identity(self) -> dict[str, str]:
        return {
            "record": self.record_id,
            "commit": str(self.code.get("commit") or UNKNOWN),
            "config_sha256": self.config_sha256,
            "rule": self.rule,
        }


_CURRENT: JobContext | None = None


def _producer_summary(entry: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not entry or not entry.get("record"):
        return None
    return {k: entry.get(k) for k in ("record", "rule", "config_sha256", "commit", "diff_sha256")}


def _input_entry(layout: Layout, path: str, names: list[str]) -> dict[str, Any]:
    stored = layout.rel(path)
    index = layout.read_index(stored)
    fp = fingerprint(layout.abs(stored), cached=index)
    return {"path": stored, "names": names, **fp, "producer": _producer_summary(index)}


def begin_job(
    snakemake: Any,
    *,
    workdir: str | os.PathLike | None = None,
    workflow_root: str | os.PathLike | None = None,
    script: str | os.PathLike | None = None,
    code: Mapping[str, Any] | None = None,
) -> JobContext:
    """Fingerprint the inputs and fix the record id; call before the job's work.

    Publishes the id (:mod:`mr2ct.provenance.job_identity`) for the figures of this process and its children.
    ``workdir`` defaults to the current directory (Snakemake's working
    directory); the workflow root is found from the script's folder. ``code``
    replaces :func:`code_version` (for callers that already know it, and tests).
    """
    global _CURRENT
    started_at, started_perf = _now(), time.perf_counter()
    layout = Layout(workdir if workdir is not None else os.getcwd())
    config = _jsonable(dict(getattr(snakemake, "config", {}) or {}))
    script_path = _script(snakemake, script)
    root = (
        Path(workflow_root)
        if workflow_root
        else find_workflow_root(
            getattr(snakemake, "scriptdir", None), script_path and Path(script_path).parent, Path(__file__).parent
        )
    )
    code = dict(code) if code is not None else code_version(root)
    script_info = None
    if script_path and os.path.isfile(script_path):
        shown = os.path.relpath(script_path, root) if root and _is_within(script_path, str(root)) else script_path
        script_info = {"path": Path(shown).as_posix(), "sha256": sha256_file(script_path)}
    inputs = [_input_entry(layout, p, names) for p, names in _files(getattr(snakemake, "input", None))]
    wildcards = _jsonable(dict(_items(getattr(snakemake, "wildcards", None))))
    params = _params(getattr(snakemake, "params", None))
    rule = str(getattr(snakemake, "rule", None) or "unknown")
    conf_sha = config_sha256(config)
    key = {
        "rule": rule,
        "wildcards": wildcards,
        "params": params,
        "config_sha256": conf_sha,
        "code": [code["commit"], code["dirty"], code["diff_sha256"], code["version"]],
        "script": script_info and script_info["sha256"],
        "inputs": [[i["path"], i.get("sha256")] for i in inputs],
    }
    record_id = f"{re.sub(r'[^A-Za-z0-9_.]+', '_', rule)}-{_sha256_text(canonical_json(key))[:16]}"
    context = JobContext(
        record_id,
        rule,
        layout,
        started_at,
        started_perf,
        wildcards,
        params,
        config,
        conf_sha,
        code,
        script_info,
        inputs,
    )
    _CURRENT = context
    publish(context.identity)
    return context


def note(key: str, value: Any) -> None:
    """Add ``key: value`` to the ``notes`` of the running job's record (e.g. the precision a run trained in)."""
    if _CURRENT is not None:
        _CURRENT.notes[key] = _jsonable(value)


def _output_pngs(layout: Layout, outputs: Iterable[str]) -> Iterator[Path]:
    for stored in outputs:
        full = layout.abs(stored)
        if full.is_dir():
            yield from sorted(full.rglob("*.png"))
        elif full.suffix.lower() == ".png" and full.is_file():
            yield full


def _write_config(layout: Layout, config: dict[str, Any], sha: str) -> str:
    stored = layout.config_file(sha)
    target = layout.abs(stored)
    if not target.exists():
        import yaml

        header = (
            f"# Effective config (sha256 {sha}) recorded by mr2ct provenance.\n"
            f"# Re-run with: snakemake --configfile {stored} <target>\n"
        )
        _atomic_write_text(target, header + yaml.safe_dump(json.loads(canonical_json(config)), sort_keys=True))
    return stored


def write_job_record(snakemake: Any, context: JobContext, *, extra_outputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Write the record of a finished job, its index entries and table sidecars; return the record file.

    Call once, after the job succeeded. PNG outputs (also inside directory
    outputs) that do not yet carry the record id get it as text chunks first.
    """
    global _CURRENT
    layout = context.layout
    outputs = _files(getattr(snakemake, "output", None))
    extras = [(os.fspath(p), ["_extra"]) for p in (*context.extra_outputs, *extra_outputs)]
    seen: set[str] = set()
    output_paths: list[tuple[str, list[str]]] = []
    for path, names in (*outputs, *extras):
        stored = layout.rel(path)
        if stored not in seen:
            seen.add(stored)
            output_paths.append((stored, names))
    stamp_pngs(_output_pngs(layout, [p for p, _ in output_paths]), context.identity)
    output_entries = [{"path": p, "names": n, **fingerprint(layout.abs(p))} for p, n in output_paths]
    ended_at = _now()
    config_file = _write_config(layout, context.config, context.config_sha256)
    record = {
        "schema": SCHEMA,
        "id": context.record_id,
        "rule": context.rule,
        "wildcards": context.wildcards,
        "script": context.script,
        "inputs": context.inputs,
        "outputs": output_entries,
        "log": [layout.rel(p) for p, _ in _files(getattr(snakemake, "log", None))],
        "params": context.params,
        "seed": _seed(context.params, context.config),
        "config_sha256": context.config_sha256,
        "config_file": config_file,
        "config": context.config,
        "code": context.code,
        "software": software_versions(),
        "host": host_info(),
        "threads": int(getattr(snakemake, "threads", 1) or 1),
        "notes": context.notes,
        "resources": _jsonable(dict(_items(getattr(snakemake, "resources", None)))),
        "started_at": context.started_at,
        "ended_at": ended_at,
        "duration_s": round(time.perf_counter() - context.started_perf, 3),
        "workdir": str(layout.workdir),
    }
    text = json.dumps(record, indent=1, ensure_ascii=False) + "\n"
    record_file = layout.record_file(context.record_id)
    _atomic_write_text(record_file, text)
    for entry in output_entries:
        if entry["kind"] != "missing" and entry["path"].startswith(f"{RESULTS}/"):
            parts = Path(entry["path"]).parts
            if len(parts) > 2 and parts[1] in SIDECAR_FOLDERS and entry["kind"] == "file":
                _atomic_write_text(layout.abs(entry["path"] + SIDECAR_SUFFIX), text)
    pointer = {
        "record": context.record_id,
        "rule": context.rule,
        "config_sha256": context.config_sha256,
        "commit": context.code.get("commit"),
        "diff_sha256": context.code.get("diff_sha256"),
    }
    for entry in output_entries:  # index last: an entry never points to a record not yet written
        if entry["kind"] != "missing":
            _atomic_write_text(layout.index_file(entry["path"]), json.dumps({**entry, **pointer}, indent=1) + "\n")
    for entry in context.inputs:  # inputs made outside the workflow: remember their hash for the next consumer
        if entry["producer"] is None and entry["kind"] != "missing":
            current = layout.read_index(entry["path"])
            if (
                current is None
                or (not current.get("record") and current.get("sha256") != entry.get("sha256"))
                or (not current.get("record") and current.get("mtime_ns") != entry.get("mtime_ns"))
            ):
                observed = {k: v for k, v in entry.items() if k not in ("names", "producer")}
                _atomic_write_text(
                    layout.index_file(entry["path"]),
                    json.dumps({**observed, "record": None, "observed_by": context.record_id}, indent=1) + "\n",
                )
    if _CURRENT is context:
        _CURRENT = None
        withdraw()
    return record_file


@contextlib.contextmanager
def job_record(snakemake: Any, **kwargs: Any) -> Iterator[JobContext]:
    """``with job_record(snakemake): work()`` writes the record when the block succeeds."""
    global _CURRENT
    context = begin_job(snakemake, **kwargs)
    try:
        yield context
    except BaseException:
        if _CURRENT is context:
            _CURRENT = None
            withdraw()
        raise
    write_job_record(snakemake, context)
