"""Hyperparameters of the workflow's training runs, without importing torch.

:class:`TrainSettings` (CycleGAN, CycleGAN + GC, supervised reference) and
:class:`SegmentationSettings` (the CT U-Net) are built from the config by the
workflow while it builds its DAG (as job parameters, so a changed setting reruns the
job), which must stay fast: this module needs only NumPy. The training code lives in
:mod:`mr2ct.models.training` and :mod:`mr2ct.segmentation.segmenter`, which re-export these classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from mr2ct.config import check_section, section_defaults
from mr2ct.data.io import InputError


def _default(section: str, key: str) -> Any:
    """The schema's default of ``<section>.<key>`` (the one place defaults are written)."""
    return section_defaults(section)[key]


__all__ = ["ARMS", "FIGURE_STEMS", "MODELS", "MODEL_LABELS", "MODEL_ORDER", "SegmentationSettings", "TrainSettings"]

#: The models the workflow trains (config key ``models`` chooses among them).
MODELS = ("cyclegan", "cyclegan_gc", "reference_supervised")
#: The two arms of the experiment, compared pairwise (without and with the GC loss).
ARMS = ("cyclegan", "cyclegan_gc")
#: Every "model" a table names, in display order, with its label: the trained models, the
#: reference predictions scored next to them, and the real CT (segmentation source).
MODEL_LABELS = {
    "cyclegan": "CycleGAN",
    "cyclegan_gc": "CycleGAN + GC",
    "reference_supervised": "supervised (paired)",
    "baseline_constant": "constant baseline",
    "baseline_histmatch": "histogram matching",
    "reference_resampled": "real CT, resampled",
    "real_ct": "real CT",
}
MODEL_ORDER = tuple(MODEL_LABELS)
#: File stems (no suffix) of the figures drawn from the tables, by content (figure 4, the
#: qualitative figure, is drawn from volumes: ``qualitative_hip``).
FIGURE_STEMS: dict[str, str] = {
    "mae": "mae_vs_training_size",
    "psnr": "psnr_vs_training_size",
    "ssim": "ssim_vs_training_size",
    "mae_boundary": "boundary_mae_vs_training_size",
    "training_curves": "training_curves",
    "dice": "dice_by_structure",
    "surface_distances": "surface_distance_by_structure",
}
#: The figures that need label maps (experiment 2).
LABEL_FIGURES = ("dice", "surface_distances")
#: Settings that do not change a run's result: how long it may take, how often it is
#: checkpointed and validated, where it runs. Left out of the digest that checkpoints carry.
SCHEDULE_FIELDS = ("time_budget_minutes", "checkpoint_every", "eval_every", "device")


#: Constants mixed into the seeds of training runs and of segmentation runs (kept distinct).
TRAIN_SEED_TAG = 303
SEGMENTATION_SEED_TAG = 505


def _digest(settings: Any) -> str:
    """Hash of every setting that determines a run's result."""
    fields = dataclasses.asdict(settings)
    for key in SCHEDULE_FIELDS:
        fields.pop(key)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _hyperparameters(section: dict[str, Any], name: str, cls: type, reserved: set[str]) -> dict[str, Any]:
    """Config section ``name`` as keyword arguments of ``cls``: without the job's ``threads``;
    keys that are not fields of ``cls`` (or are set by the caller: ``reserved``) refused."""
    values = dict(section)
    values.pop("threads", None)  # a resource of the job, not a hyperparameter
    unknown = set(values) - ({f.name for f in dataclasses.fields(cls)} - reserved)
    if unknown:
        raise InputError(f"config key '{name}': unknown key(s) {sorted(unknown)}")
    return values


def _seed(config: dict[str, Any], *tags: int) -> int:
    return int(np.random.SeedSequence([int(config["seed"]), *tags]).generate_state(1)[0])


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters of one training run (see ``train:`` in config.yaml).

    Defaults and allowed values are those of the config schema (``train:``), the one place
    they are written; ``gc_weight`` is the weight this run uses (``from_config`` gives
    ``train.gc_weight`` to ``cyclegan_gc`` only, 0 to the others).
    """

    model: str = "cyclegan_gc"
    steps: int = _default("train", "steps")
    batch_size: int = _default("train", "batch_size")
    lr: float = _default("train", "lr")
    beta1: float = _default("train", "beta1")
    beta2: float = _default("train", "beta2")
    decay_fraction: float = _default("train", "decay_fraction")
    pool_size: int = _default("train", "pool_size")
    lambda_cycle: float = _default("train", "lambda_cycle")
    lambda_identity: float = _default("train", "lambda_identity")
    gc_weight: float = 0.0
    gc_absolute: bool = _default("train", "gc_absolute")
    mind_weight: float = _default("train", "mind_weight")
    context_slices: int = _default("train", "context_slices")
    ngf: int = _default("train", "ngf")
    n_blocks: int = _default("train", "n_blocks")
    n_downsampling: int = _default("train", "n_downsampling")
    upsampling: str = _default("train", "upsampling")
    ndf: int = _default("train", "ndf")
    n_layers: int = _default("train", "n_layers")
    min_body_fraction: float = _default("train", "min_body_fraction")
    augment: bool = _default("train", "augment")
    crop_size: int = _default("train", "crop_size")
    checkpoint_every: int = _default("train", "checkpoint_every")
    eval_every: int = _default("train", "eval_every")
    seed: int = 0
    device: str = _default("train", "device")
    amp: str = _default("train", "amp")
    channels_last: bool = _default("train", "channels_last")
    time_budget_minutes: float = _default("train", "time_budget_minutes")

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"unknown model '{self.model}' (one of {', '.join(MODELS)})")
        if self.gc_weight and self.model != "cyclegan_gc":
            raise InputError(f"model '{self.model}' trains without the GC loss; got gc_weight {self.gc_weight}")
        if self.mind_weight and self.model == "reference_supervised":
            raise InputError(f"model '{self.model}' trains without the MIND loss; got mind_weight {self.mind_weight}")
        fields = dataclasses.asdict(self)
        check_section("train", {k: v for k, v in fields.items() if k not in ("model", "seed")})

    @classmethod
    def from_config(cls, config: dict[str, Any], model: str, size: int, fold: int, replicate: int = 0) -> TrainSettings:
        """Settings of one run; the seed is derived from the config seed, size, model, fold and
        replicate (``splits.replicates``; replicate 0 has the seed of an unreplicated run)."""
        train = dict(config["train"])
        gc_weight = float(train.pop("gc_weight")) if model == "cyclegan_gc" else 0.0
        train.pop("gc_weight", None)
        if model == "reference_supervised":  # the structure loss is part of the unpaired objective only
            train["mind_weight"] = 0.0
        if model == "reference_supervised":
            train["steps"] = int(train.pop("supervised_steps"))
        else:
            train.pop("supervised_steps", None)
        train = _hyperparameters(train, "train", cls, {"model", "seed"})
        n_replicates = int(config.get("splits", {}).get("replicates", 1))
        if not 0 <= int(replicate) < n_replicates:
            raise InputError(f"replicate {replicate} is outside config key 'splits.replicates' ({n_replicates})")
        tags = [TRAIN_SEED_TAG, size, MODELS.index(model), fold] + ([int(replicate)] if replicate else [])
        seed = _seed(config, *tags)
        return cls(model=model, gc_weight=gc_weight, seed=seed, **train)

    def digest(self) -> str:
        """Hash of everything that determines the result (not the time budget or device)."""
        return _digest(self)


@dataclass(frozen=True)
class SegmentationSettings:
    """Hyperparameters of one segmentation training run (see ``segmentation:`` in config.yaml);
    defaults and allowed values from the config schema."""

    steps: int = _default("segmentation", "steps")
    batch_size: int = _default("segmentation", "batch_size")
    lr: float = _default("segmentation", "lr")
    base: int = _default("segmentation", "base")
    depth: int = _default("segmentation", "depth")
    dice_weight: float = _default("segmentation", "dice_weight")
    min_body_fraction: float = _default("segmentation", "min_body_fraction")
    augment: bool = _default("segmentation", "augment")
    sampling: str = _default("segmentation", "sampling")
    checkpoint_every: int = _default("segmentation", "checkpoint_every")
    eval_every: int = _default("segmentation", "eval_every")
    device: str = _default("segmentation", "device")
    time_budget_minutes: float = _default("segmentation", "time_budget_minutes")
    seed: int = 0
    n_classes: int = 13  # background + the 12 phantom labels; give it from the label table in general

    def __post_init__(self) -> None:
        if self.n_classes < 2:
            raise InputError(f"a segmentation needs at least 2 classes (background + 1 label), got {self.n_classes}")
        fields = dataclasses.asdict(self)
        check_section("segmentation", {k: v for k, v in fields.items() if k not in ("seed", "n_classes")})

    @classmethod
    def from_config(cls, config: dict[str, Any], fold: int, n_classes: int) -> SegmentationSettings:
        """Settings of one fold's run; the seed is derived from the config seed and the fold."""
        seg = _hyperparameters(config["segmentation"], "segmentation", cls, {"seed", "n_classes"})
        seed = _seed(config, SEGMENTATION_SEED_TAG, int(fold))
        return cls(seed=seed, n_classes=int(n_classes), **seg)

    def digest(self) -> str:
        """Hash of everything that determines the result (not the time budget, checkpoint schedule, device)."""
        return _digest(self)
