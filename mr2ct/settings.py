"""Hyperparameters of the workflow's training runs, without importing torch.

:class:`TrainSettings` (CycleGAN, CycleGAN + GC, supervised reference) and
:class:`SegmentationSettings` (the CT U-Net) are built from the config by the
workflow while it builds its DAG (as job parameters, so a changed setting reruns the
job), which must stay fast: this module needs only NumPy. The training code lives in
:mod:`mr2ct.training` and :mod:`mr2ct.segmentation`, which re-export these classes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .io import InputError

__all__ = ["ARMS", "MODELS", "MODEL_LABELS", "MODEL_ORDER", "SegmentationSettings", "TrainSettings"]

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
#: train.amp: bf16 autocast where the device supports bf16 ("auto"), always ("bf16") or never ("none")
AMP_MODES = ("auto", "none", "bf16")
#: train.upsampling of the generator: transposed convolution (the paper's) or resize-then-convolve
UPSAMPLING = ("transpose", "resize")
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
    """Hyperparameters of one training run (see ``train:`` in config.yaml)."""

    model: str = "cyclegan_gc"
    steps: int = 1500
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_fraction: float = 0.5
    pool_size: int = 50
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.0
    gc_weight: float = 0.0
    gc_absolute: bool = True
    ngf: int = 16
    n_blocks: int = 6
    n_downsampling: int = 2
    upsampling: str = "transpose"
    ndf: int = 32
    n_layers: int = 3
    min_body_fraction: float = 0.05
    augment: bool = True
    crop_size: int = 0  # 0: train on whole slices; else on random crops of this size
    checkpoint_every: int = 250
    eval_every: int = 250
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = False
    time_budget_minutes: float = 0.0  # 0: no budget

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"unknown model '{self.model}' (one of {', '.join(MODELS)})")
        if self.steps < 1 or self.batch_size < 1:
            raise InputError(
                f"config key 'train.steps'/'train.batch_size' must be ≥ 1, got {self.steps}/{self.batch_size}"
            )
        if self.gc_weight < 0:
            raise InputError(f"config key 'train.gc_weight' must be ≥ 0, got {self.gc_weight}")
        if self.crop_size < 0 or self.crop_size % 4:
            raise InputError(
                f"config key 'train.crop_size' must be 0 or a positive multiple of 4, got {self.crop_size}"
            )
        if self.amp not in AMP_MODES:
            raise InputError(f"config key 'train.amp' must be one of {', '.join(AMP_MODES)}, got {self.amp}")
        if self.upsampling not in UPSAMPLING:
            raise InputError(
                f"config key 'train.upsampling' must be one of {', '.join(UPSAMPLING)}, got {self.upsampling}"
            )
        if self.crop_size % 2**self.n_downsampling:
            raise InputError(
                f"config key 'train.crop_size' ({self.crop_size}) must be a multiple of "
                f"2^train.n_downsampling = {2**self.n_downsampling}"
            )

    @classmethod
    def from_config(cls, config: dict[str, Any], model: str, size: int, fold: int) -> TrainSettings:
        """Settings of one run; the seed is derived from the config seed, size, model and fold."""
        train = dict(config["train"])
        gc_weight = float(train.pop("gc_weight")) if model == "cyclegan_gc" else 0.0
        train.pop("gc_weight", None)
        if model == "reference_supervised":
            train["steps"] = int(train.pop("supervised_steps"))
        else:
            train.pop("supervised_steps", None)
        train = _hyperparameters(train, "train", cls, {"model", "seed"})
        seed = _seed(config, TRAIN_SEED_TAG, size, MODELS.index(model), fold)
        return cls(model=model, gc_weight=gc_weight, seed=seed, **train)

    def digest(self) -> str:
        """Hash of everything that determines the result (not the time budget or device)."""
        return _digest(self)


@dataclass(frozen=True)
class SegmentationSettings:
    """Hyperparameters of one segmentation training run (see ``segmentation:`` in config.yaml)."""

    steps: int = 800
    batch_size: int = 8
    lr: float = 1e-3
    base: int = 16
    depth: int = 3
    dice_weight: float = 1.0
    min_body_fraction: float = 0.05
    augment: bool = True
    checkpoint_every: int = 200
    eval_every: int = 200
    seed: int = 0
    device: str = "auto"
    time_budget_minutes: float = 0.0  # 0: no budget
    n_classes: int = 13  # background + the 12 phantom labels; give it from the label table in general

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise InputError(
                "config key 'segmentation.steps'/'segmentation.batch_size' must be ≥ 1, "
                f"got {self.steps}/{self.batch_size}"
            )
        if self.lr <= 0:
            raise InputError(f"config key 'segmentation.lr' must be > 0, got {self.lr}")
        if self.base < 1 or self.depth < 0:
            raise InputError(
                f"config keys 'segmentation.base'/'segmentation.depth' must be ≥ 1/≥ 0, got {self.base}/{self.depth}"
            )
        if self.dice_weight < 0:
            raise InputError(f"config key 'segmentation.dice_weight' must be ≥ 0, got {self.dice_weight}")
        if not 0.0 <= self.min_body_fraction < 1.0:
            raise InputError(
                f"config key 'segmentation.min_body_fraction' must be in [0, 1), got {self.min_body_fraction}"
            )
        if self.checkpoint_every < 1:
            raise InputError(f"config key 'segmentation.checkpoint_every' must be ≥ 1, got {self.checkpoint_every}")
        if self.n_classes < 2:
            raise InputError(f"a segmentation needs at least 2 classes (background + 1 label), got {self.n_classes}")

    @classmethod
    def from_config(cls, config: dict[str, Any], fold: int, n_classes: int) -> SegmentationSettings:
        """Settings of one fold's run; the seed is derived from the config seed and the fold."""
        seg = _hyperparameters(config["segmentation"], "segmentation", cls, {"seed", "n_classes"})
        seed = _seed(config, SEGMENTATION_SEED_TAG, int(fold))
        return cls(seed=seed, n_classes=int(n_classes), **seg)

    def digest(self) -> str:
        """Hash of everything that determines the result (not the time budget, checkpoint schedule, device)."""
        return _digest(self)
