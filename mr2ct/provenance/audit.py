"""``mr2ct audit``: the lineage of an output back to raw inputs and config, and its verification.

Reads the records of :mod:`mr2ct.provenance.records`. *Verification* of an output's lineage reports, per file:

``MISSING``   the file (or a file of a recorded directory) is gone;
``CHANGED``   its SHA-256 differs from what its consumer (for the audited file:
              its producer) recorded;
``ADDED``     a file inside a recorded directory that its record does not list
              (put there after the job ended). Snakemake's own bookkeeping
              files in directory outputs (``.snakemake_timestamp``) are neither
              recorded nor reported;
``STALE``     the file's current producing record has a different config hash
              or code version (commit, or uncommitted diff) than the record its
              consumer says it used: the file was re-made under other settings
              after the consumer ran, so the consumer is out of date;
``NORECORD``  a record named by the index or by a consumer is gone;
``MIXED``     (only with ``strict``) a producer ran with a different config or
              code version than its consumer. Snakemake legitimately keeps
              upstream outputs whose params did not change, so this is a note,
              not a failure, unless strict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from mr2ct.provenance.records import SCHEMA, UNKNOWN, Layout, ProvenanceError, _read_json, fingerprint

__all__ = ["add_audit_parser", "audit", "code_summary", "iter_tree", "render_text"]


class _Auditor:
    def __init__(self, layout: Layout, verify: bool, strict: bool):
        self.layout, self.verify, self.strict = layout, verify, strict
        self.records: dict[str, dict[str, Any] | None] = {}
        self.indexes: dict[str, dict[str, Any] | None] = {}
        self.actual: dict[str, dict[str, Any]] = {}
        self.expanded: set[tuple[str, str | None]] = set()
        self.problems: list[dict[str, str]] = []
        self.problem_keys: set[tuple[str, str]] = set()
        self.mixed: dict[tuple, list[str]] = {}
        self.hashed_files = 0

    def record(self, record_id: str | None) -> dict[str, Any] | None:
        if not record_id:
            return None
        if record_id not in self.records:
            self.records[record_id] = _read_json(self.layout.record_file(record_id))
        return self.records[record_id]

    def index(self, stored: str) -> dict[str, Any] | None:
        if stored not in self.indexes:
            self.indexes[stored] = self.layout.read_index(stored)
        return self.indexes[stored]

    def current(self, stored: str) -> dict[str, Any]:
        if stored not in self.actual:
            fp = fingerprint(self.layout.abs(stored))
            self.hashed_files += len(fp.get("files", [])) if fp["kind"] == "dir" else int(fp["kind"] == "file")
            self.actual[stored] = fp
        return self.actual[stored]

    def problem(self, path: str, kind: str, detail: str, node: dict[str, Any]) -> None:
        if kind not in node["problems"]:
            node["problems"].append(kind)
        if (path, kind) not in self.problem_keys:
            self.problem_keys.add((path, kind))
            self.problems.append({"path": path, "kind": kind, "detail": detail})

    def check_content(self, node: dict[str, Any], expected: Mapping[str, Any], whose: str) -> None:
        path = node["path"]
        actual = self.current(path)
        if actual["kind"] == "missing":
            self.problem(path, "MISSING", f"recorded by {whose}, no longer exists", node)
            return
        if expected.get("kind") == "dir" or actual["kind"] == "dir":
            if actual["kind"] != expected.get("kind"):
                self.problem(path, "CHANGED", f"was a {expected.get('kind')} for {whose}, now a {actual['kind']}", node)
                return
            want = {f["path"]: f["sha256"] for f in expected.get("files", [])}
            have = {f["path"]: f["sha256"] for f in actual["files"]}
            for name in sorted(set(want) | set(have)):
                sub = f"{path}/{name}"
                if name not in have:
                    self.problem(sub, "MISSING", f"file of directory {path}/ recorded by {whose}", node)
                elif name not in want:
                    self.problem(sub, "ADDED", f"file not written by {whose}: added to directory {path}/ later", node)
                elif want[name] != have[name]:
                    self.problem(
                        sub,
                        "CHANGED",
                        f"sha256 {have[name][:12]} differs from {want[name][:12]} recorded by {whose}",
                        node,
                    )
            return
        if actual["sha256"] != expected.get("sha256"):
            self.problem(
                path,
                "CHANGED",
                f"sha256 {actual['sha256'][:12]} differs from {str(expected.get('sha256'))[:12]} recorded by {whose}",
                node,
            )

    def node(
        self, stored: str, used: Mapping[str, Any] | None, consumer: Mapping[str, Any] | None, depth: int
    ) -> dict[str, Any]:
        index = self.index(stored)
        used_producer = (used or {}).get("producer") or None
        producer_id = (used_producer or {}).get("record") or (index or {}).get("record")
        record = self.record(producer_id)
        produced = next((o for o in (record or {}).get("outputs", []) if o["path"] == stored), None)
        expected = used if used is not None else (produced or index)
        node: dict[str, Any] = {
            "path": stored,
            "kind": (expected or index or {}).get("kind", "file"),
            "sha256": (expected or index or {}).get("sha256"),
            "rule": record["rule"] if record else None,
            "record": producer_id if record else None,
            "config_sha256": record.get("config_sha256") if record else None,
            "seen": False,
            "problems": [],
            "inputs": [],
        }
        whose = (
            f"record {consumer['id']} ({consumer['rule']})"
            if consumer
            else (f"record {producer_id} ({record['rule']})" if record else "its index entry")
        )
        if producer_id and record is None:
            self.problem(
                stored,
                "NORECORD",
                f"record {producer_id} named by "
                f"{'record ' + consumer['id'] if consumer and used_producer else 'the index'} is gone",
                node,
            )
        if self.verify:
            if expected is not None:
                self.check_content(node, expected, whose)
            if used_producer and index and index.get("record"):
                if (
                    index.get("config_sha256") != used_producer.get("config_sha256")
                    or index.get("commit") != used_producer.get("commit")
                    or index.get("diff_sha256") != used_producer.get("diff_sha256")
                ):
                    self.problem(
                        stored,
                        "STALE",
                        f"re-made by record {index['record']} (config "
                        f"{str(index.get('config_sha256'))[:12]}, commit {str(index.get('commit'))[:12]}) "
                        f"after {whose} used the version of record {used_producer.get('record')} (config "
                        f"{str(used_producer.get('config_sha256'))[:12]}, commit "
                        f"{str(used_producer.get('commit'))[:12]})",
                        node,
                    )
        if record and consumer and _version(record) != _version(consumer):
            detail = (
                f"made by {record['rule']} under config {record['config_sha256'][:12]} / commit "
                f"{str(record['code'].get('commit'))[:12]}, used by {consumer['rule']} under config "
                f"{consumer['config_sha256'][:12]} / commit {str(consumer['code'].get('commit'))[:12]}"
            )
            if self.strict and self.verify:
                self.problem(stored, "MIXED", detail, node)
            self.mixed.setdefault((_version(record), _version(consumer)), []).append(f"{stored}: {detail}")
        key = (stored, producer_id)
        if key in self.expanded:
            node["seen"] = True
            return node
        self.expanded.add(key)
        if record:
            node["inputs"] = [self.node(i["path"], i, record, depth + 1) for i in record.get("inputs", [])]
        return node


def _version(record: Mapping[str, Any]) -> tuple:
    code = record.get("code") or {}
    return record.get("config_sha256"), code.get("commit"), code.get("diff_sha256")


def _reproduce(layout: Layout, record: Mapping[str, Any], target: str) -> dict[str, Any]:
    code = record.get("code") or {}
    root = code.get("workflow_root")
    config = record.get("config_file") or layout.config_file(record["config_sha256"])
    parts = ["snakemake", target]  # the target first: --configfile takes several files
    same_dir = root and os.path.normpath(root) == os.path.normpath(record.get("workdir") or "")
    if root and not same_dir:
        parts += ["-s", f"{root}/Snakefile", "--directory", str(layout.workdir)]
    profile = Path(root) / "profiles" / "local" if root else None
    if profile is not None and profile.is_dir():
        parts += ["--profile", "profiles/local" if same_dir else str(profile)]
    else:
        parts += ["--cores", "all"]
    parts += ["--configfile", config]
    checkout = None
    if code.get("commit") not in (None, UNKNOWN):
        checkout = f"git -C {root or '<workflow folder>'} checkout {code['commit']}"
        if code.get("dirty"):
            checkout += "   # the record's tree had uncommitted changes, not restored by this"
    return {
        "cwd": str(layout.workdir),
        "command": " ".join(parts),
        "checkout": checkout,
        "note": f"add --forcerun {record['rule']} to re-make it when up to date, "
        "--forceall to re-make its whole lineage from the raw inputs",
    }


def audit(path: str | os.PathLike, verify: bool = False, strict: bool = False) -> dict[str, Any]:
    """The lineage of an output under ``results/`` back to raw inputs and config, as a JSON-able dict.

    With ``verify`` every file of the lineage is re-hashed (each once) and
    ``problems`` lists every missing, changed or stale file (see the module
    docstring; ``strict`` also fails on mixed config/code versions).
    ``ok`` is ``False`` when there are problems. Raises :class:`ProvenanceError`
    for a path outside a results folder or without a record.
    """
    started = time.perf_counter()
    layout, stored = Layout.for_target(path)
    found = layout.owner(stored)
    if found is None:
        raise ProvenanceError(
            f"{path}: no provenance record (not a recorded output of a workflow job; "
            f"logs, benchmarks and undeclared files have none)"
        )
    owner, entry = found
    if not entry.get("record"):
        raise ProvenanceError(f"{path}: not made by a recorded job (only observed as an input)")
    auditor = _Auditor(layout, verify, strict)
    record = auditor.record(entry["record"])
    if record is None:
        raise ProvenanceError(f"{path}: its record {entry['record']} is missing from {layout.records}")
    tree = auditor.node(owner, None, None, 0)
    configs: dict[str, dict[str, Any]] = {}
    for rec in auditor.records.values():
        if rec:
            info = configs.setdefault(rec["config_sha256"], {"file": rec.get("config_file"), "records": 0})
            info["records"] += 1
    config_file = record.get("config_file")
    return {
        "schema": SCHEMA,
        "target": stored,
        "output": owner,
        "workdir": str(layout.workdir),
        "record": record["id"],
        "record_file": layout.rel(layout.record_file(record["id"])),
        "rule": record["rule"],
        "wildcards": record.get("wildcards", {}),
        "config": {
            "sha256": record["config_sha256"],
            "file": config_file,
            "exists": bool(config_file and layout.abs(config_file).is_file()),
        },
        "configs": configs,
        "code": record.get("code", {}),
        "started_at": record.get("started_at"),
        "ended_at": record.get("ended_at"),
        "tree": tree,
        "records": len([r for r in auditor.records.values() if r]),
        "notes": [
            f"{len(set(edges))} input(s) made under another config/code version than their consumer, e.g. {edges[0]}"
            for edges in auditor.mixed.values()
        ],
        "verified": verify,
        "strict": strict,
        "hashed_files": auditor.hashed_files,
        "problems": auditor.problems,
        "ok": not auditor.problems,
        "seconds": round(time.perf_counter() - started, 3),
        "reproduce": _reproduce(layout, record, owner),
    }


def code_summary(workdir: str | os.PathLike = ".") -> list[dict[str, Any]]:
    """Which code and config made the results in ``workdir``: one row per distinct
    (commit, dirty, diff, package version, config hash) among all job records, with the
    number of records, the rules and the time span. One row means one consistent run."""
    layout = Layout(workdir)
    groups: dict[tuple, dict[str, Any]] = {}
    for path in sorted(layout.records.glob("*.json")):
        record = _read_json(path)
        if not record:
            continue
        code = record.get("code", {})
        key = (
            code.get("commit", UNKNOWN),
            bool(code.get("dirty")),
            (code.get("diff_sha256") or "")[:12],
            code.get("version", UNKNOWN),
            record.get("config_sha256", UNKNOWN)[:12],
        )
        row = groups.setdefault(
            key,
            {
                "commit": key[0],
                "dirty": key[1],
                "diff_sha256": key[2],
                "version": key[3],
                "config_sha256": key[4],
                "records": 0,
                "rules": set(),
                "first_started": record.get("started_at"),
                "last_ended": record.get("ended_at"),
            },
        )
        row["records"] += 1
        row["rules"].add(record.get("rule", UNKNOWN))
        row["first_started"] = min(filter(None, [row["first_started"], record.get("started_at")]), default=None)
        row["last_ended"] = max(filter(None, [row["last_ended"], record.get("ended_at")]), default=None)
    rows = sorted(groups.values(), key=lambda r: (r["first_started"] or "", r["commit"]))
    for row in rows:
        row["rules"] = " ".join(sorted(row["rules"]))
    return rows


def _node_label(node: Mapping[str, Any], root_config: str) -> str:
    name = node["path"] + ("/" if node.get("kind") == "dir" else "")
    short = (node.get("sha256") or "?")[:8]
    label = f"{name}  [{node.get('rule') or 'source'} {short}]"
    if node.get("config_sha256") and node["config_sha256"] != root_config:
        label += f"  config {node['config_sha256'][:8]}"
    if node.get("seen") and node.get("rule"):
        label += "  (see above)"
    if node.get("problems"):
        label += "  !! " + " ".join(node["problems"])
    return label


def iter_tree(node: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """Pre-order ``(depth, node)`` of an audit tree: the order of the text lines."""
    yield depth, node
    for child in node.get("inputs", []):
        yield from iter_tree(child, depth + 1)


def render_text(report: Mapping[str, Any], max_depth: int | None = None) -> str:
    """The audit report as text: one line per lineage node (indented inputs), then config, code, checks, hint."""
    root_config = report["config"]["sha256"]
    lines: list[str] = []

    def walk(node: Mapping[str, Any], prefix: str, last: bool, depth: int) -> None:
        connector = "" if depth == 0 else ("└─ " if last else "├─ ")
        lines.append(prefix + connector + _node_label(node, root_config))
        children = node.get("inputs", [])
        child_prefix = prefix + ("" if depth == 0 else ("   " if last else "│  "))
        if max_depth is not None and depth >= max_depth and children:
            lines.append(child_prefix + f"└─ … {len(children)} input(s) not shown")
            return
        for i, child in enumerate(children):
            walk(child, child_prefix, i == len(children) - 1, depth + 1)

    walk(report["tree"], "", True, 0)
    if report["target"] != report["output"]:
        lines.append(f"(target {report['target']} is a file of the directory output {report['output']}/)")
    lines.append("")
    config = report["config"]
    lines.append(
        f"record  {report['record_file']}  (rule {report['rule']}"
        + (f", {', '.join(f'{k}={v}' for k, v in report['wildcards'].items())}" if report["wildcards"] else "")
        + f", ended {report.get('ended_at')})"
    )
    lines.append(
        f"config  sha256 {config['sha256'][:16]}  {config['file']}" + ("" if config["exists"] else "  (file missing)")
    )
    if len(report["configs"]) > 1:
        for sha, info in sorted(report["configs"].items()):
            lines.append(f"        {sha[:16]}  {info['file']}  ({info['records']} record(s) of the lineage)")
    code = report["code"]
    dirty = {True: " (uncommitted changes)", False: "", None: ""}[code.get("dirty")]
    lines.append(
        f"code    {code.get('package', 'mr2ct')} {code.get('version', UNKNOWN)}, commit "
        f"{code.get('commit', UNKNOWN)}{dirty}"
    )
    lines.append(f"lineage {report['records']} record(s)")
    for note in report["notes"]:
        lines.append(f"note    {note}")
    if report["verified"] and report["ok"]:
        lines.append(f"verify  OK: {report['hashed_files']} file(s) re-hashed, all as recorded")
    elif report["verified"]:
        lines.append(
            f"verify  FAILED: {len(report['problems'])} problem(s) ({report['hashed_files']} file(s) re-hashed)"
        )
    elif report["problems"]:
        lines.append(f"records FAILED: {len(report['problems'])} problem(s)")
    for problem in report["problems"]:
        lines.append(f"  {problem['kind']:<8} {problem['path']}: {problem['detail']}")
    hint = report["reproduce"]
    lines.append("")
    lines.append(f"reproduce (in {hint['cwd']}):")
    if hint.get("checkout"):
        lines.append(f"  {hint['checkout']}")
    lines.append(f"  {hint['command']}")
    lines.append(f"  # {hint['note']}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# command line: mr2ct audit


def _cmd_audit(args: argparse.Namespace) -> int:
    report = audit(args.path, verify=args.verify, strict=args.strict)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        print(render_text(report, max_depth=args.depth), end="")
    if not report["ok"]:
        print(
            f"mr2ct audit: {len(report['problems'])} problem(s): "
            + ", ".join(f"{p['kind']} {p['path']}" for p in report["problems"]),
            file=sys.stderr,
        )
        return 1
    return 0


def add_audit_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``mr2ct audit`` on the CLI's subparsers."""
    p = subparsers.add_parser("audit", help="lineage of an output back to raw inputs and config; --verify re-hashes it")
    p.add_argument("path", type=Path, help="an output under results/ (figure, table, synthetic CT, model, …)")
    p.add_argument(
        "--verify",
        action="store_true",
        help="re-hash every file of the lineage; exit 1 naming missing, changed or stale files",
    )
    p.add_argument(
        "--strict", action="store_true", help="with --verify, also fail when the lineage mixes config/code versions"
    )
    p.add_argument("--json", action="store_true", help="machine-readable JSON instead of text")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="text: show N levels of inputs only")
    p.set_defaults(func=_cmd_audit)
    return p
