"""Experiment tables: synthesis accuracy per test subject, reference predictions, segmentation scores.

Synthesis rows (``synthesis_metrics.csv``): ``size, model, fold, replicate,
subject, mae, psnr, ssim, mae_boundary``, all against the subject's real CT at its original
resolution inside the body mask (definitions in :mod:`mr2ct.evaluation.metrics`). Besides
the trained models, three reference predictions built from the same fold's
data:

``baseline_constant``
    every body voxel set to the mean HU of the training CT volumes inside
    their body masks: what a network that learnt nothing but the average
    would score;
``baseline_histmatch``
    an unpaired histogram-matching map from normalised MR intensity to HU
    (quantiles of the training MR and CT body voxels), applied voxel-wise;
``reference_resampled``
    the real CT itself, taken to the training resolution and back: the floor
    no synthesis at that resolution can beat.

Segmentation rows (``segmentation_metrics.csv``): ``size, model, fold,
replicate, subject, source, structure, dice, assd_mm, hd95_mm, empty_prediction``;
for ``source = real_ct`` ``model`` is ``real_ct`` and ``size`` is empty (the real CT
is segmented once per fold).

``replicate`` is the seed index of a trained model's run (``splits.replicates``);
predictions that no seed determines (the reference predictions, the real CT) are
computed once and carry replicate 0. ``empty_prediction`` is 1 when the structure was not
predicted at all: its ASSD and HD95 are then missing (NaN), never averaged as if
they were small.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mr2ct.data.io import atomic_write_text, read_table, read_volume
from mr2ct.data.preprocess import load_preprocessed
from mr2ct.evaluation.metrics import bone_label_ids, bone_mask, mae, mae_boundary, psnr, segmentation_scores, ssim

__all__ = [
    "SYNTHESIS_COLUMNS",
    "SEGMENTATION_COLUMNS",
    "SubjectInputs",
    "subject_inputs",
    "label_names",
    "concat_parts",
    "reference_predictions",
    "segmentation_metrics_job",
    "segmentation_rows",
    "synthesis_rows",
    "synthesis_scores",
    "reference_metrics_job",
    "synthesis_metrics_job",
    "write_table",
]

SYNTHESIS_COLUMNS = ["size", "model", "fold", "replicate", "subject", "mae", "psnr", "ssim", "mae_boundary"]
SEGMENTATION_COLUMNS = [
    "size",
    "model",
    "fold",
    "replicate",
    "subject",
    "source",
    "structure",
    "dice",
    "assd_mm",
    "hd95_mm",
    "empty_prediction",
]


def synthesis_scores(
    real_ct: np.ndarray, synthetic_ct: np.ndarray, mask: np.ndarray, spacing, bone: np.ndarray, band_mm: float = 2.0
) -> dict[str, float]:
    """MAE, PSNR, SSIM and boundary MAE (within ``band_mm`` of the bone surface) of one subject."""
    return {
        "mae": mae(real_ct, synthetic_ct, mask),
        "psnr": psnr(real_ct, synthetic_ct, mask),
        "ssim": ssim(real_ct, synthetic_ct, mask),
        "mae_boundary": mae_boundary(real_ct, synthetic_ct, mask, spacing, bone=bone, band_mm=band_mm),
    }


class _Reference:
    """A test subject's real CT, mask, bone mask and spacing (read once)."""

    def __init__(self, files: SubjectInputs, label_table: Mapping[int, str] | None, band_mm: float = 2.0):
        ct = read_volume(files.ct)
        self.band_mm = band_mm
        self.subject = files.subject
        self.shape = ct.data.shape
        self.ct = ct.data
        self.spacing = ct.spacing
        self.mask = read_volume(files.mask, dtype=np.uint8).data > 0
        labels = read_volume(files.labels, dtype=np.uint8).data if files.labels else None
        self.bone = bone_mask(self.ct, labels, bone_label_ids(label_table))

    def scores(self, prediction: np.ndarray) -> dict[str, float]:
        if prediction.shape != self.shape:
            raise ValueError(
                f"subject '{self.subject}': prediction shape {prediction.shape} differs from the CT's {self.shape}"
            )
        return synthesis_scores(self.ct, prediction, self.mask, self.spacing, self.bone, self.band_mm)


def synthesis_rows(
    synthetic_dir: str | os.PathLike,
    subjects: Sequence[SubjectInputs],
    size: int,
    model: str,
    fold: int,
    label_table: Mapping[int, str] | None,
    band_mm: float = 2.0,
    replicate: int = 0,
) -> pd.DataFrame:
    """Scores of every test subject's synthetic CT (``<synthetic_dir>/<subject>.nii.gz``)."""
    rows = []
    for files in subjects:
        reference = _Reference(files, label_table, band_mm)
        fake = read_volume(Path(synthetic_dir) / f"{files.subject}.nii.gz").data
        run = {"size": size, "model": model, "fold": fold, "replicate": replicate}
        rows.append({**run, "subject": files.subject, **reference.scores(fake)})
    return pd.DataFrame(rows, columns=SYNTHESIS_COLUMNS)


def _body_values(path_volume: str | os.PathLike, path_mask: str | os.PathLike) -> np.ndarray:
    return read_volume(path_volume).data[read_volume(path_mask, dtype=np.uint8).data > 0]


def _normalised_mr(files: SubjectInputs, cache_path: str | os.PathLike) -> np.ndarray:
    """The subject's MR at full resolution, normalised exactly as its training slices."""
    with np.load(cache_path) as cache:
        lo, hi = (float(v) for v in cache["mr_range"])
    mr = read_volume(files.mr).data
    return np.clip(2.0 * (mr - lo) / (hi - lo) - 1.0, -1.0, 1.0)


def quantile_map(source: np.ndarray, target: np.ndarray, n_quantiles: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """The map of unpaired histogram matching: equal quantiles of ``source`` and ``target`` values
    (apply with ``np.interp(x, *quantile_map(...))``); both outputs are non-decreasing."""
    q = np.linspace(0.0, 1.0, n_quantiles)
    return np.quantile(source, q), np.quantile(target, q)


def reference_predictions(
    test_subjects: Sequence[SubjectInputs],
    test_caches: Sequence[str | os.PathLike],
    train_mr: Sequence[tuple[SubjectInputs, str | os.PathLike]],
    train_ct: Sequence[SubjectInputs],
    size: int,
    fold: int,
    label_table: Mapping[int, str] | None,
    band_mm: float = 2.0,
    n_quantiles: int = 1001,
) -> pd.DataFrame:
    """Rows of ``baseline_constant``, ``baseline_histmatch`` and ``reference_resampled`` for the test subjects.

    ``train_mr`` pairs each MR training subject with its cache (for its MR
    normalisation); ``train_ct`` are the CT training subjects.
    """
    ct_values = np.concatenate([_body_values(s.ct, s.mask) for s in train_ct])
    mean_hu = float(ct_values.mean())
    mr_values = np.concatenate(
        [_normalised_mr(s, cache)[read_volume(s.mask, dtype=np.uint8).data > 0] for s, cache in train_mr]
    )
    mr_quantiles, ct_quantiles = quantile_map(mr_values, ct_values, n_quantiles)
    del ct_values, mr_values
    rows = []
    for files, cache_path in zip(test_subjects, test_caches):
        reference = _Reference(files, label_table, band_mm)
        predictions = {
            "baseline_constant": np.where(reference.mask, mean_hu, -1024.0).astype(np.float32),
            "baseline_histmatch": np.interp(_normalised_mr(files, cache_path), mr_quantiles, ct_quantiles).astype(
                np.float32
            ),
        }
        cache = load_preprocessed(cache_path)
        # the real CT through the synthesis path (slices and back): a bug there shows here too
        predictions["reference_resampled"] = cache.ct_volume(cache.ct).data
        for model, prediction in predictions.items():
            run = {"size": size, "model": model, "fold": fold, "replicate": 0}
            rows.append({**run, "subject": files.subject, **reference.scores(prediction)})
    return pd.DataFrame(rows, columns=SYNTHESIS_COLUMNS)


def segmentation_rows(
    predictions: Mapping[str, str | os.PathLike],
    subjects: Sequence[SubjectInputs],
    label_table: Mapping[int, str],
    size: int | None,
    model: str,
    fold: int,
    source: str,
    replicate: int = 0,
) -> pd.DataFrame:
    """Dice, ASSD and HD95 per structure of predicted label files against the reference labels."""
    rows = []
    for files in subjects:
        if files.labels is None:
            raise ValueError(f"subject '{files.subject}' has no label file to score against")
        reference = read_volume(files.labels, dtype=np.uint8)
        predicted = read_volume(predictions[files.subject], dtype=np.uint8)
        for score in segmentation_scores(predicted.data, reference.data, reference.spacing, list(label_table)):
            rows.append(
                {
                    "size": size,
                    "model": model,
                    "fold": fold,
                    "replicate": replicate,
                    "subject": files.subject,
                    "source": source,
                    "structure": label_table[score["label"]],
                    "dice": score["dice"],
                    "assd_mm": score["assd_mm"],
                    "hd95_mm": score["hd95_mm"],
                    # the structure was not predicted at all: its surface distances do not exist
                    "empty_prediction": int(score["n_pred"] == 0),
                }
            )
    return pd.DataFrame(rows, columns=SEGMENTATION_COLUMNS)


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a CSV atomically with fixed float formatting (byte-identical for identical numbers)."""
    return atomic_write_text(path, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))


def concat_tables(paths: Sequence[str | os.PathLike], columns: Sequence[str], sort: Sequence[str]) -> pd.DataFrame:
    """Concatenate per-job CSV parts into one table sorted by the experiment's keys."""
    parts = [read_table(p) for p in paths]  # subject ids stay strings (001 is not 1)
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
    return table[list(columns)].sort_values(list(sort), kind="stable", na_position="first").reset_index(drop=True)


@dataclass(frozen=True)
class SubjectInputs:
    """The files that scoring one test subject reads (``labels``, ``cache``, ``mr`` when needed)."""

    subject: str
    ct: Path | None = None
    mask: Path | None = None
    labels: Path | None = None
    cache: Path | None = None
    mr: Path | None = None


def subject_inputs(subjects: Sequence[str], **files: Sequence[str | os.PathLike] | None) -> list[SubjectInputs]:
    """One :class:`SubjectInputs` per id from per-kind file lists in the same order (as a rule's
    named inputs give them: ``ct=[...], mask=[...]``); ``None`` kinds are left out."""
    given = {kind: list(paths) for kind, paths in files.items() if paths is not None}
    for kind, paths in given.items():
        if len(paths) != len(subjects):
            raise ValueError(f"{len(subjects)} subject(s) but {len(paths)} '{kind}' file(s)")
    return [
        SubjectInputs(subject, **{kind: Path(paths[i]) for kind, paths in given.items()})
        for i, subject in enumerate(subjects)
    ]


def label_names(path: str | os.PathLike | None) -> dict[int, str] | None:
    """Label id -> structure name from a cohort's label table, or None without one."""
    from mr2ct.data.cohort import read_label_table

    return read_label_table(path) if path else None


def synthesis_metrics_job(
    subjects: Sequence[SubjectInputs],
    label_table,
    synthetic_dir,
    size: int,
    model: str,
    fold: int,
    band_mm: float,
    out,
    replicate: int = 0,
) -> Path:
    """Score one run's synthetic CT of its fold's test subjects; write the CSV part."""
    table = synthesis_rows(synthetic_dir, subjects, size, model, fold, label_names(label_table), band_mm, replicate)
    return write_table(table, out)


def reference_metrics_job(
    test: Sequence[SubjectInputs],
    train_mr: Sequence[SubjectInputs],
    train_ct: Sequence[SubjectInputs],
    label_table,
    size: int,
    fold: int,
    band_mm: float,
    out,
) -> Path:
    """Score the baselines and the resampling reference of one size and fold; write the CSV part.

    ``test`` carry MR, CT, mask (labels) and cache; ``train_mr`` MR, mask and cache; ``train_ct`` CT and mask.
    """
    table = reference_predictions(
        test,
        [s.cache for s in test],
        [(s, s.cache) for s in train_mr],
        train_ct,
        size,
        fold,
        label_names(label_table),
        band_mm,
    )
    return write_table(table, out)


#: columns and sort keys of the two aggregated tables
TABLE_KINDS = {
    "synthesis": (SYNTHESIS_COLUMNS, ["size", "model", "fold", "replicate", "subject"]),
    "segmentation": (SEGMENTATION_COLUMNS, ["source", "size", "model", "fold", "replicate", "subject", "structure"]),
}


def concat_parts(paths: Sequence[str | os.PathLike], out: str | os.PathLike, kind: str) -> Path:
    """Concatenate CSV parts of one ``kind`` (``synthesis`` or ``segmentation`` rows) into one sorted table."""
    columns, keys = TABLE_KINDS[kind]
    return write_table(concat_tables(paths, columns, keys), out)


def segmentation_metrics_job(
    subjects: Sequence[SubjectInputs],
    label_table,
    labels_dir,
    out,
    fold: int,
    size: int | None = None,
    model: str = "real_ct",
    replicate: int = 0,
) -> Path:
    """Score one folder of predicted labels (real CT when ``model == 'real_ct'``); write the CSV part."""
    predictions = {s.subject: Path(labels_dir) / f"{s.subject}.nii.gz" for s in subjects}
    source = "real_ct" if model == "real_ct" else "synthetic_ct"
    table = segmentation_rows(predictions, subjects, label_names(label_table), size, model, fold, source, replicate)
    return write_table(table, out)
