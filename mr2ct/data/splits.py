"""Cross-validation folds, validation subjects and nested unpaired training sets.

Everything is a pure function of the sorted subject ids, the config and the
seed, so the workflow can compute the splits when it is parsed (to build the
DAG) and write the very same splits to ``results/splits/`` for people to read.

Per fold:

* ``test``: the held-out subjects, never used for training or model selection;
* ``validation``: subjects taken from the rest for monitoring training
  (never in a training set);
* ``pool``: the remaining subjects in a fixed, fold-specific random order.
  The training set of size *n* is the first *n* subjects of the pool, so sets
  are nested (the size-4 set contains the size-2 set of the same fold).

Unpaired training (``pairing``):

* ``disjoint`` (default): MR slices come from one half of the training set
  and CT slices from the other half (alternating along the pool order, which
  keeps the halves nested too), so no subject contributes both modalities;
* ``shuffled``: MR and CT come from the same subjects, drawn independently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mr2ct.data.io import InputError

__all__ = [
    "FoldSplit",
    "TrainingSet",
    "check_sizes",
    "make_folds",
    "splits_from_config",
    "splits_table",
    "splits_tsv",
    "statistics_warning",
    "write_splits",
]

#: The exact two-sided Wilcoxon signed-rank test on n pairs cannot give p below 2 / 2**n,
#: which is under 0.05 only from n = 6 pairs on.
MIN_PAIRS_FOR_P05 = 6


@dataclass(frozen=True)
class TrainingSet:
    """The unpaired training subjects of one fold and size."""

    fold: int
    size: int
    mr: tuple[str, ...]
    ct: tuple[str, ...]

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.mr + self.ct))


@dataclass(frozen=True)
class FoldSplit:
    """Subjects of one cross-validation fold."""

    fold: int
    test: tuple[str, ...]
    validation: tuple[str, ...]
    pool: tuple[str, ...]

    def training_set(self, size: int, pairing: str = "disjoint") -> TrainingSet:
        """The first ``size`` pool subjects, split into MR and CT sources by ``pairing``."""
        if size > len(self.pool):
            raise InputError(
                f"config key 'splits.sizes': size {size} is larger than the training pool of fold {self.fold} "
                f"({len(self.pool)} subjects available)"
            )
        chosen = self.pool[:size]
        if pairing == "disjoint":
            if size < 2:
                raise InputError("config key 'splits.sizes': pairing 'disjoint' needs at least 2 subjects")
            return TrainingSet(self.fold, size, chosen[0::2], chosen[1::2])
        if pairing == "shuffled":
            return TrainingSet(self.fold, size, chosen, chosen)
        raise InputError(f"config key 'splits.pairing': unknown pairing '{pairing}' (disjoint or shuffled)")


def make_folds(subjects: list[str], folds: int, seed: int, validation_subjects: int = 1) -> list[FoldSplit]:
    """Split ``subjects`` into ``folds`` cross-validation folds (deterministic from ``seed``)."""
    ids = sorted(subjects)
    if len(set(ids)) != len(ids):
        dup = sorted({s for s in ids if ids.count(s) > 1})
        raise InputError(f"duplicate subject id(s): {', '.join(dup)}")
    if folds < 2:
        raise InputError(f"config key 'splits.folds': need at least 2 folds, got {folds}")
    if folds > len(ids):
        raise InputError(f"config key 'splits.folds': {folds} folds but only {len(ids)} subjects")
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 101])).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    out = []
    for fold, test_idx in enumerate(np.array_split(np.arange(len(ids)), folds)):
        test = tuple(sorted(shuffled[i] for i in test_idx))
        rest = [s for s in ids if s not in test]
        if validation_subjects >= len(rest):
            raise InputError(
                f"config key 'splits.validation_subjects': {validation_subjects} validation subject(s) leave no "
                f"training subjects in fold {fold} ({len(rest)} non-test subjects)"
            )
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 202, fold]))
        rest = [rest[i] for i in rng.permutation(len(rest))]
        out.append(FoldSplit(fold, test, tuple(sorted(rest[:validation_subjects])), tuple(rest[validation_subjects:])))
    return out


def check_sizes(folds: list[FoldSplit], sizes: list[int], pairing: str) -> None:
    """Raise a config error if any size does not fit every fold's pool."""
    smallest = min(len(f.pool) for f in folds)
    too_big = [s for s in sizes if s > smallest]
    if too_big:
        raise InputError(
            f"config key 'splits.sizes': size(s) {too_big} exceed the training pool: {smallest} subjects are "
            f"available per fold ({sum(len(f.test) for f in folds)} subjects, {len(folds)} folds, "
            f"{len(folds[0].validation)} validation subject(s) per fold)"
        )
    for fold in folds:
        for size in sizes:
            fold.training_set(size, pairing)


def splits_from_config(subjects: list[str], config: dict[str, Any]) -> list[FoldSplit]:
    """Folds for a validated config, with the sizes checked against the pools."""
    sp = config["splits"]
    folds = make_folds(subjects, sp["folds"], config["seed"], sp["validation_subjects"])
    check_sizes(folds, sp["sizes"], sp["pairing"])
    return folds


def statistics_warning(folds: list[FoldSplit]) -> str | None:
    """A warning when the design has too few test subjects for the paired tests to mean anything."""
    n = sum(len(f.test) for f in folds)
    if n >= MIN_PAIRS_FOR_P05:
        return None
    return (
        f"only {n} test subject(s) over all folds: a paired Wilcoxon test of {n} pairs cannot reach p < 0.05 "
        f"(it needs at least {MIN_PAIRS_FOR_P05}); the statistics will not resolve any difference. "
        "Add subjects (data.phantom.subjects or your cohort)."
    )


def splits_table(folds: list[FoldSplit], sizes: list[int], pairing: str) -> pd.DataFrame:
    """Long table ``fold, size, subject, role`` (role: test, validation, train_mr, train_ct, train)."""
    rows = []
    for fold in folds:
        for subject in fold.test:
            rows.append((fold.fold, "", subject, "test"))
        for subject in fold.validation:
            rows.append((fold.fold, "", subject, "validation"))
        for size in sorted(sizes):
            ts = fold.training_set(size, pairing)
            if pairing == "disjoint":
                rows += [(fold.fold, size, s, "train_mr") for s in ts.mr]
                rows += [(fold.fold, size, s, "train_ct") for s in ts.ct]
            else:
                rows += [(fold.fold, size, s, "train") for s in ts.mr]
    return pd.DataFrame(rows, columns=["fold", "size", "subject", "role"])


def splits_tsv(subjects: list[str], config: dict[str, Any]) -> str:
    """The splits of a validated config as TSV text (``fold, size, subject, role``)."""
    sp = config["splits"]
    table = splits_table(splits_from_config(list(subjects), config), sp["sizes"], sp["pairing"])
    return table.to_csv(sep="\t", index=False, lineterminator="\n")


def write_splits(subjects: list[str], config: dict[str, Any], out) -> Any:
    """Write :func:`splits_tsv` to ``out`` (atomically)."""
    from mr2ct.data.io import atomic_write_text

    return atomic_write_text(out, splits_tsv(subjects, config))
