"""The resumable optimisation loop shared by every network of the workflow.

A *run* object holds all mutable state of a training run (``step``,
``history``, ``columns``, ``train_step(*batch)`` returning the values of
``columns`` by name, ``state_dict()``, ``load_state_dict()``);
:func:`run_steps` drives it, writing atomic checkpoints, and :func:`resume`
loads a checkpoint back only when it was written by a run with the same
*identity*: the checkpoint format, the kind of run, the digest of every
setting that determines the result, the numeric precision and the content
of the run's input files (:func:`data_identity`). Anything else starts the run
afresh, and the log says what differed, so an input that changed can never
leave an old model in place.

Checkpoints are loaded with ``torch.load(weights_only=True)``: nothing is
unpickled.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mr2ct.data.io import InputError, atomic_path, atomic_write_text
from mr2ct.provenance.records import sha256_file

__all__ = [
    "CHECKPOINT_FORMAT",
    "TrainingInterrupted",
    "data_identity",
    "load_checkpoint",
    "resume",
    "run_steps",
    "save_checkpoint",
    "write_history",
]

log = logging.getLogger("mr2ct.models.resumable")

#: version of the checkpoint layout; a checkpoint of another format is never resumed
CHECKPOINT_FORMAT = 3


class TrainingInterrupted(RuntimeError):
    """Training stopped at its wall-time budget after writing a checkpoint; rerun to resume."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint as plain tensors and containers (``weights_only=True``: nothing is unpickled)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # torch's message advises loading with weights_only=False: never do that with a file one did not write
        reason = str(exc).split("\n")[0].split(" In PyTorch 2.6")[0].strip()
        raise InputError(
            f"{path}: not a valid mr2ct checkpoint (refused to load: {type(exc).__name__}: {reason[:300]})"
        ) from None


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a reader never sees a half-written checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def data_identity(**roles: Sequence[str | os.PathLike]) -> str:
    """The content of a run's input files, by role and in order, as a JSON string.

    ``data_identity(mr=[...], ct=[...], validation=[...])`` lists ``[file name,
    sha256]`` per file: a run resumes only from a checkpoint written for inputs
    with the same content in the same roles (file names are kept only to say
    which input changed).
    """
    listing = {role: [[Path(p).name, sha256_file(p)] for p in paths] for role, paths in roles.items()}
    return json.dumps(listing, sort_keys=True)


def _data_changes(stored: str | None, current: str) -> str:
    """Which inputs differ between two :func:`data_identity` strings, in words."""
    try:
        old = json.loads(stored) if stored else {}
    except ValueError:
        old = {}
    new = json.loads(current)
    changes = []
    for role in sorted(set(old) | set(new)):
        before, after = dict(map(tuple, old.get(role, []))), dict(map(tuple, new.get(role, [])))
        if [name for name, _ in old.get(role, [])] != [name for name, _ in new.get(role, [])]:
            changes.append(f"{role}: files {sorted(before)} → {sorted(after)}")
            continue
        changed = [name for name in after if before.get(name) != after[name]]
        if changed:
            changes.append(f"{role}: content of {', '.join(changed)}")
    return "; ".join(changes) or "inputs"


def resume(run: Any, checkpoint: Path, identity: Mapping[str, Any]) -> bool:
    """Load ``checkpoint`` into ``run`` when it exists and carries ``identity``; return whether it did.

    Otherwise the fresh ``run`` is kept and the log says why (which setting,
    precision or input file differs).
    """
    if not checkpoint.exists():
        return False
    state = load_checkpoint(checkpoint)
    if not isinstance(state, dict):
        log.warning("checkpoint %s is not a state dictionary; starting afresh", checkpoint)
        return False
    differing = [key for key, value in identity.items() if state.get(key) != value]
    if differing:
        reasons = []
        for key in differing:
            if key == "data":
                reasons.append(f"training data changed ({_data_changes(state.get('data'), identity['data'])})")
            else:
                reasons.append(f"{key} {state.get(key)!r} ≠ {identity[key]!r}")
        log.warning("checkpoint %s was written for another run (%s); starting afresh", checkpoint, "; ".join(reasons))
        return False
    run.load_state_dict(state)
    log.info("resumed from %s at step %d", checkpoint, run.step)
    return True


def run_steps(
    run: Any,
    settings: Any,
    checkpoint: Path,
    identity: Mapping[str, Any],
    next_batch: Callable[[], tuple],
    validate: Callable[[], None],
    *,
    desc: str,
    postfix: dict[str, str],
    progress: bool = True,
    started: float | None = None,
) -> None:
    """Train ``run`` to ``settings.steps``, checkpointing with ``identity``.

    ``next_batch()`` draws the next batch from the run's own generator, so a
    resumed run draws what an uninterrupted one would. Validates at step 0
    (fresh runs), every ``eval_every`` steps and at the end; writes an atomic
    checkpoint (the run's state plus ``identity``) every ``checkpoint_every``
    steps and at the end; with ``time_budget_minutes`` > 0, writes a
    checkpoint and raises :class:`TrainingInterrupted` once the budget
    (counted from ``started``, a ``time.monotonic()`` value, by default now)
    is spent. ``postfix`` maps progress-bar labels to names of ``run.columns``
    (running mean of 25 steps).
    """
    from tqdm import tqdm

    def save() -> None:
        save_checkpoint(checkpoint, {**run.state_dict(), **identity})

    started = time.monotonic() if started is None else started
    s = settings
    if run.step == 0 and s.eval_every > 0:
        validate()
    bar = tqdm(total=s.steps, initial=run.step, desc=desc, unit="step", disable=not progress, mininterval=2.0)
    budget = s.time_budget_minutes * 60.0
    while run.step < s.steps:
        values = run.train_step(*next_batch())
        run.history.append([values[name] for name in run.columns])
        run.step += 1
        bar.update()
        if run.step % 25 == 0:
            recent = np.asarray(run.history[-25:])
            means = dict(zip(run.columns, recent.mean(axis=0)))
            bar.set_postfix({label: f"{means[name]:.3f}" for label, name in postfix.items()})
        if s.eval_every > 0 and (run.step % s.eval_every == 0 or run.step == s.steps):
            validate()
        if run.step % s.checkpoint_every == 0 and run.step < s.steps:
            save()
        if budget > 0 and time.monotonic() - started > budget and run.step < s.steps:
            save()
            bar.close()
            raise TrainingInterrupted(
                f"time budget of {s.time_budget_minutes} min reached at step {run.step}; "
                "checkpoint written, rerun to resume"
            )
    bar.close()
    save()


def write_history(
    out_dir: Path,
    history: Sequence[Sequence[float]],
    columns: Sequence[str],
    validation: Sequence[dict],
    validation_columns: Sequence[str] | None = None,
) -> None:
    """``losses.tsv`` (one row per step) and, when there are validation scores, ``validation.tsv``."""
    import pandas as pd

    table = pd.DataFrame(list(history), columns=list(columns))
    table.insert(0, "step", np.arange(1, len(table) + 1))
    atomic_write_text(
        out_dir / "losses.tsv", table.to_csv(sep="\t", index=False, float_format="%.6g", lineterminator="\n")
    )
    if validation:
        scores = pd.DataFrame(list(validation), columns=validation_columns)
        atomic_write_text(
            out_dir / "validation.tsv", scores.to_csv(sep="\t", index=False, float_format="%.4f", lineterminator="\n")
        )
