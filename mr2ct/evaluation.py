"""Experiment tables: synthesis accuracy per test subject, reference predictions, segmentation scores.

Synthesis rows (``synthesis_metrics.csv``): ``size, model, fold, subject, mae,
psnr, ssim, mae_boundary``, all against the subject's real CT at its original
resolution inside the body mask (definitions in :mod:`mr2ct.metrics`). Besides
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
subject, source, structure, dice, assd_mm, hd95_mm, empty_prediction``; for
``source = real_ct`` ``model`` is ``real_ct`` and ``size`` is empty (the real CT is
segmented once per fold). ``empty_prediction`` is 1 when the structure was not
predicted at all: its ASSD and HD95 are then missing (NaN), never averaged as if
they were small.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .cohort import SubjectFiles
from .io import atomic_write_text, read_volume
from .metrics import mae, mae_boundary, psnr, segmentation_scores, ssim
from .preprocess import load_preprocessed

__all__ = [
    "SYNTHESIS_COLUMNS",
    "SEGMENTATION_COLUMNS",
    "bone_mask",
    "concat_parts",
    "qualitative_job",
    "reference_predictions",
    "segment_job",
    "segmentation_metrics_job",
    "segmentation_rows",
    "synthesis_rows",
    "synthesis_scores",
    "reference_metrics_job",
    "synthesis_metrics_job",
    "write_table",
]

SYNTHESIS_COLUMNS = ["size", "model", "fold", "subject", "mae", "psnr", "ssim", "mae_boundary"]
SEGMENTATION_COLUMNS = [
    "size",
    "model",
    "fold",
    "subject",
    "source",
    "structure",
    "dice",
    "assd_mm",
    "hd95_mm",
    "empty_prediction",
]
#: Without bone labels, bone is the reference CT above this (cancellous bone is 150–350 HU, cortex > 1000).
BONE_THRESHOLD_HU = 200.0
#: Structures whose surface is "the bone surface" for the boundary MAE.
BONE_PREFIXES = ("pelvis", "femur", "sacrum", "hip")


def bone_mask(ct_hu: np.ndarray, labels: np.ndarray | None, label_table: Mapping[int, str] | None) -> np.ndarray:
    """Bone of the reference: pelvis and femur labels when present, else CT > ``BONE_THRESHOLD_HU``."""
    if labels is not None and label_table:
        ids = [i for i, name in label_table.items() if name.lower().startswith(BONE_PREFIXES)]
        if ids:
            return np.isin(labels, ids)
    return ct_hu > BONE_THRESHOLD_HU


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

    def __init__(self, files: SubjectFiles, label_table: Mapping[int, str] | None, band_mm: float = 2.0):
        ct = read_volume(files.ct)
        self.band_mm = band_mm
        self.subject = files.subject
        self.shape = ct.data.shape
        self.ct = ct.data
        self.spacing = ct.spacing
        self.mask = read_volume(files.mask, dtype=np.uint8).data > 0
        labels = read_volume(files.labels, dtype=np.uint8).data if files.labels else None
        self.bone = bone_mask(self.ct, labels, label_table)

    def scores(self, prediction: np.ndarray) -> dict[str, float]:
        if prediction.shape != self.shape:
            raise ValueError(
                f"subject '{self.subject}': prediction shape {prediction.shape} differs from the CT's {self.shape}"
            )
        return synthesis_scores(self.ct, prediction, self.mask, self.spacing, self.bone, self.band_mm)


def synthesis_rows(
    synthetic_dir: str | os.PathLike,
    subjects: Sequence[SubjectFiles],
    size: int,
    model: str,
    fold: int,
    label_table: Mapping[int, str] | None,
    band_mm: float = 2.0,
) -> pd.DataFrame:
    """Scores of every test subject's synthetic CT (``<synthetic_dir>/<subject>.nii.gz``)."""
    rows = []
    for files in subjects:
        reference = _Reference(files, label_table, band_mm)
        fake = read_volume(Path(synthetic_dir) / f"{files.subject}.nii.gz").data
        rows.append({"size": size, "model": model, "fold": fold, "subject": files.subject, **reference.scores(fake)})
    return pd.DataFrame(rows, columns=SYNTHESIS_COLUMNS)


def _body_values(path_volume: str | os.PathLike, path_mask: str | os.PathLike) -> np.ndarray:
    return read_volume(path_volume).data[read_volume(path_mask, dtype=np.uint8).data > 0]


def _normalised_mr(files: SubjectFiles, cache_path: str | os.PathLike) -> np.ndarray:
    """The subject's MR at full resolution, normalised exactly as its training slices."""
    with np.load(cache_path) as cache:
        lo, hi = (float(v) for v in cache["mr_range"])
    mr = read_volume(files.mr).data
    return np.clip(2.0 * (mr - lo) / (hi - lo) - 1.0, -1.0, 1.0)


def reference_predictions(
    test_subjects: Sequence[SubjectFiles],
    test_caches: Sequence[str | os.PathLike],
    train_mr: Sequence[tuple[SubjectFiles, str | os.PathLike]],
    train_ct: Sequence[SubjectFiles],
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
    q = np.linspace(0.0, 1.0, n_quantiles)
    ct_quantiles = np.quantile(ct_values, q)
    del ct_values
    mr_values = np.concatenate(
        [_normalised_mr(s, cache)[read_volume(s.mask, dtype=np.uint8).data > 0] for s, cache in train_mr]
    )
    mr_quantiles = np.quantile(mr_values, q)
    del mr_values
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
        predictions["reference_resampled"] = cache.grid.to_volume(
            cache.ct_hu(cache.ct), cache.shape[:2], order=1, cval=float(cache.ct_hu_points[0])
        )
        for model, prediction in predictions.items():
            rows.append(
                {"size": size, "model": model, "fold": fold, "subject": files.subject, **reference.scores(prediction)}
            )
    return pd.DataFrame(rows, columns=SYNTHESIS_COLUMNS)


def segmentation_rows(
    predictions: Mapping[str, str | os.PathLike],
    subjects: Sequence[SubjectFiles],
    label_table: Mapping[int, str],
    size: int | None,
    model: str,
    fold: int,
    source: str,
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
    parts = [pd.read_csv(p) for p in paths]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(columns))
    return table[list(columns)].sort_values(list(sort), kind="stable", na_position="first").reset_index(drop=True)


class Design:
    """The cohort, folds and label table of a validated config (as the workflow computes them)."""

    def __init__(self, config: dict[str, Any], results: str | os.PathLike = "results"):
        from .cohort import cohort_from_config, read_label_table
        from .splits import splits_from_config

        self.config = config
        self.results = Path(results)
        self.cohort = cohort_from_config(config, results)
        self.folds = splits_from_config(self.cohort.ids, config)
        self.label_table = read_label_table(self.cohort.labels_table) if self.cohort.labels_table else None

    def cache(self, subject: str) -> Path:
        return self.results / "preprocessed" / f"{subject}.npz"

    def test_subjects(self, fold: int) -> list[SubjectFiles]:
        return [self.cohort[s] for s in self.folds[fold].test]


def synthesis_metrics_job(config: dict[str, Any], size: int, model: str, fold: int, synthetic_dir, out) -> Path:
    """Score one run's synthetic CT of its fold's test subjects; write the CSV part."""
    design = Design(config)
    band = config["evaluation"]["boundary_band_mm"]
    table = synthesis_rows(synthetic_dir, design.test_subjects(fold), size, model, fold, design.label_table, band)
    return write_table(table, out)


def reference_metrics_job(config: dict[str, Any], size: int, fold: int, out) -> Path:
    """Score the baselines and the resampling reference of one size and fold; write the CSV part."""
    design = Design(config)
    ts = design.folds[fold].training_set(size, config["splits"]["pairing"])
    test = design.test_subjects(fold)
    table = reference_predictions(
        test,
        [design.cache(s.subject) for s in test],
        [(design.cohort[s], design.cache(s)) for s in ts.mr],
        [design.cohort[s] for s in ts.ct],
        size,
        fold,
        design.label_table,
        config["evaluation"]["boundary_band_mm"],
    )
    return write_table(table, out)


def concat_parts(paths: Sequence[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Concatenate CSV parts (synthesis or segmentation rows) into one sorted table."""
    first = pd.read_csv(paths[0], nrows=0) if paths else pd.DataFrame(columns=SYNTHESIS_COLUMNS)
    if "source" in first.columns:
        columns, keys = SEGMENTATION_COLUMNS, ["source", "size", "model", "fold", "subject", "structure"]
    else:
        columns, keys = SYNTHESIS_COLUMNS, ["size", "model", "fold", "subject"]
    return write_table(concat_tables(paths, columns, keys), out)


def segment_job(config: dict[str, Any], fold: int, model_path, out_dir, synthetic_dir=None) -> list[Path]:
    """Segment the fold's test subjects: their real CT, or the synthetic CT in ``synthetic_dir``."""
    from .segmentation import segment_files

    design = Design(config)
    subjects = design.test_subjects(fold)
    cts = [s.ct if synthetic_dir is None else Path(synthetic_dir) / f"{s.subject}.nii.gz" for s in subjects]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return segment_files(
        model_path,
        cts,
        [design.cache(s.subject) for s in subjects],
        [out_dir / f"{s.subject}.nii.gz" for s in subjects],
    )


def segmentation_metrics_job(
    config: dict[str, Any], fold: int, labels_dir, out, size: int | None = None, model: str = "real_ct"
) -> Path:
    """Score one folder of predicted labels (real CT when ``model == 'real_ct'``); write the CSV part."""
    design = Design(config)
    subjects = design.test_subjects(fold)
    predictions = {s.subject: Path(labels_dir) / f"{s.subject}.nii.gz" for s in subjects}
    source = "real_ct" if model == "real_ct" else "synthetic_ct"
    return write_table(segmentation_rows(predictions, subjects, design.label_table, size, model, fold, source), out)


def qualitative_job(
    config: dict[str, Any], fold: int, synthetic_dirs: Mapping[str, str | os.PathLike], out_stem
) -> list[Path]:
    """Figure 4: the fold's first test subject, real and synthetic CT of each model on the hip-joint slice."""
    from .plotting import plot_qualitative

    design = Design(config)
    files = design.test_subjects(fold)[0]
    ct = read_volume(files.ct)
    labels = read_volume(files.labels, dtype=np.uint8).data if files.labels else None
    femur_ids = [i for i, n in (design.label_table or {}).items() if n.lower().startswith("femur")] or [2, 3]
    names = {"cyclegan": "CycleGAN", "cyclegan_gc": "CycleGAN + GC", "reference_supervised": "supervised (paired)"}
    synthetic = {
        names.get(m, m): read_volume(Path(d) / f"{files.subject}.nii.gz").data for m, d in synthetic_dirs.items()
    }
    return plot_qualitative(
        out_stem,
        read_volume(files.mr).data,
        ct.data,
        synthetic,
        read_volume(files.mask, dtype=np.uint8).data,
        labels,
        ct.spacing,
        femur_ids=sorted(femur_ids),
        subject=files.subject,
    )
