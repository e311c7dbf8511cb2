"""Glue between Snakemake jobs and the package: logging, threads and error reporting.

Every script in ``workflow_scripts/`` is a few lines that call :func:`run` with
the ``snakemake`` object and one package function. :func:`run` sends log
records to the rule's ``log:`` file (and stderr), pins the number of threads
to the rule's ``threads:``, and writes the full traceback of a failure into the
log before re-raising, so a failed job always leaves a readable log. After a
successful job it writes the job's provenance record (:mod:`mr2ct.provenance.records`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mr2ct.provenance import records as provenance

__all__ = ["configure_logging", "run", "snakemake_command"]

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(log_file: str | None = None, level: int = logging.INFO) -> logging.Logger:
    """Log to stderr and, when given, to ``log_file`` (appending)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
    return logging.getLogger("mr2ct")


def _set_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def run(snakemake: Any, job: Callable[[], Any]) -> Any:
    """Run ``job`` inside a Snakemake script with logging and thread limits set up."""
    log_file = str(snakemake.log[0]) if len(snakemake.log) else None
    logger = configure_logging(log_file)
    threads = int(getattr(snakemake, "threads", 1) or 1)
    _set_threads(threads)
    wildcards = dict(snakemake.wildcards.items()) if hasattr(snakemake.wildcards, "items") else {}
    logger.info("rule %s %s (threads=%d)", snakemake.rule, wildcards, threads)
    start = time.perf_counter()
    try:
        with provenance.job_record(snakemake):
            result = job()
    except Exception:
        logger.exception("rule %s failed", snakemake.rule)
        raise
    logger.info("rule %s done in %.1f s", snakemake.rule, time.perf_counter() - start)
    return result


def snakemake_command(workdir: str | os.PathLike, *args: str, root: str | os.PathLike | None = None) -> list[str]:
    """``python -m snakemake`` on the workflow at ``root`` (default: the checkout this package is
    installed from, editable) with ``workdir`` as its working directory, then ``args``. Put targets
    before ``--configfile``/``--config``, which take every word that follows them."""
    root = Path(root) if root is not None else provenance.find_workflow_root(Path(__file__).parent)
    if root is None:
        raise provenance.ProvenanceError("no Snakefile above the mr2ct package: give the workflow folder (root=)")
    return [sys.executable, "-m", "snakemake", "-s", str(Path(root) / "Snakefile"), "--directory", str(workdir), *args]
