"""CycleGAN (± gradient consistency) and the paired supervised reference: training runs.

One run trains the networks of one (training size, model, fold) on the cached
axial slices of its training subjects (:mod:`mr2ct.data.preprocess`,
:mod:`mr2ct.data.splits`). Models:

``cyclegan``, ``cyclegan_gc``
    unpaired CycleGAN (Zhu et al. 2017): generators G_CT (MR→CT) and G_MR
    (CT→MR), 70×70 PatchGAN discriminators, least-squares adversarial loss,
    L1 cycle loss, optional identity loss; ``cyclegan_gc`` adds the
    gradient-consistency loss of Hiasa et al. 2018 with weight ``gc_weight``.
    MR and CT batches are drawn independently from their own slice pools.
``reference_supervised``
    G_CT alone, trained with L1 on *paired* MR/CT slices of the same training
    subjects: an upper bound of what the architecture reaches with paired data.

Runs are deterministic (same config → same weights on the same machine) and
resumable: checkpoints (written atomically) hold every network, optimiser,
scheduler, image pool, random-generator state, the loss history and the
step, so a rerun after an interruption ends with bit-identical weights.
Checkpoints are loaded with ``torch.load(weights_only=True)``.

Model selection: with validation subjects, the G_CT written to
``generator.pt`` is the one with the lowest validation MAE among the
evaluations (every ``eval_every`` steps); the validation subjects are never
test subjects, so test scores stay unbiased. Unpaired CycleGAN training is
unstable late in training (a trial's validation MAE rose from 77 to 93 HU in
the learning-rate decay), which selection guards against.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mr2ct.data.io import InputError
from mr2ct.data.preprocess import PreprocessedSubject, context_stack, load_preprocessed
from mr2ct.evaluation.metrics import bone_mask, mae, mae_boundary
from mr2ct.models.devices import resolve_precision, training_device
from mr2ct.models.losses import (
    cycle_loss,
    gradient_consistency,
    gradient_consistency_loss,
    identity_loss,
    lsgan_loss,
    mind_loss,
)
from mr2ct.models.networks import GeneratorSpec, PatchDiscriminator, init_weights
from mr2ct.models.resumable import (
    CHECKPOINT_FORMAT,
    data_identity,
    resume,
    run_steps,
    save_checkpoint,
    write_history,
)
from mr2ct.models.synthesis import predict_ct
from mr2ct.provenance import records as provenance
from mr2ct.settings import MODELS, TrainSettings

__all__ = [
    "LOSS_COLUMNS",
    "MODELS",
    "CycleGANRun",
    "SupervisedRun",
    "TrainSettings",
    "new_run",
    "train_run",
]

log = logging.getLogger("mr2ct.models.training")

#: What a training step reports (one column each in ``losses.tsv``): the generators' total
#: objective and its terms (unweighted), the discriminators' objective, the GC of MR and
#: synthetic CT (logged for both arms), and the learning rate the step used.
LOSS_COLUMNS = ("loss_g", "adv", "cycle", "identity", "gc_loss", "mind_loss", "loss_d", "gc_mr_to_ct", "lr")


# --------------------------------------------------------------------------
# data


def slice_pool(
    subjects: Sequence[PreprocessedSubject], key: str, min_fraction: float, context: int = 0
) -> torch.Tensor:
    """The body slices of ``subjects`` (modality ``key``) as a batch ``(N, 2 context + 1, H, W)``:
    each slice with ``context`` neighbours on either side as channels (2.5D; 0: one channel)."""
    parts = [context_stack(getattr(s, key), context, s.body_slices(min_fraction)) for s in subjects]
    return torch.from_numpy(np.concatenate(parts)).contiguous()


AUGMENT_ZOOM = 0.15  # random isotropic zoom in [1 - z, 1 + z]
AUGMENT_SHIFT = 0.05  # random translation, fraction of the half field of view


def augment_geometry(images: Sequence[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
    """Random left-right flip, zoom and shift, the same for every tensor of ``images``.

    The counterpart of CycleGAN's resize-and-crop and flip augmentation (Zhu et
    al. 2017): with a few training subjects per modality the discriminators
    otherwise learn the body outlines of the training CTs, and the generator
    reshapes every body into one of them (seen on the phantom: subcutaneous fat
    turned into air for a subject with a wider body). Pass MR and CT batches
    separately for unpaired training (independent transforms) and together for
    paired training (one transform). Background (−1, air in both
    normalisations) fills what moves into the field of view.
    """
    n = images[0].shape[0]
    u = torch.rand((n, 4), generator=generator)
    zoom = 1.0 + AUGMENT_ZOOM * (2.0 * u[:, 0] - 1.0)
    flip = torch.where(u[:, 1] < 0.5, -1.0, 1.0)
    theta = torch.zeros((n, 2, 3))
    theta[:, 0, 0] = flip / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = AUGMENT_SHIFT * (2.0 * u[:, 2] - 1.0)
    theta[:, 1, 2] = AUGMENT_SHIFT * (2.0 * u[:, 3] - 1.0)
    grid = torch.nn.functional.affine_grid(theta, list(images[0].shape), align_corners=False)
    return [
        torch.nn.functional.grid_sample(
            x + 1.0, grid.to(x.device, x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False
        )
        - 1.0
        for x in images
    ]


def random_crop(images: Sequence[torch.Tensor], size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A random ``size`` x ``size`` window per sample, the same window for every tensor of ``images``.

    Training on crops of finer slices (CycleGAN's crop; Zhu et al. 2017 crop 256 from
    286) keeps the cost of a step while the fully convolutional generator is applied
    to whole slices at synthesis time.
    """
    n, _, height, width = images[0].shape
    if size <= 0 or (size >= height and size >= width):
        return list(images)
    rows = torch.randint(0, height - size + 1, (n,), generator=generator).tolist()
    cols = torch.randint(0, width - size + 1, (n,), generator=generator).tolist()
    return [
        torch.stack([x[i, :, r : r + size, c : c + size] for i, (r, c) in enumerate(zip(rows, cols))]) for x in images
    ]


class ImagePool:
    """History of generated images (Shrivastava et al. 2017), as in CycleGAN: size 50, p = 0.5."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = generator

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                index = int(torch.randint(0, self.size, (), generator=self.generator).item())
                out.append(self.images[index].clone())
                self.images[index] = image.clone()
            else:
                out.append(image)
        return torch.cat(out)

    def state(self) -> torch.Tensor:
        return torch.cat(self.images) if self.images else torch.empty(0)

    def load(self, tensor: torch.Tensor) -> None:
        self.images = [t.unsqueeze(0).clone() for t in tensor] if tensor.numel() else []


# --------------------------------------------------------------------------
# the run


def _linear_decay(settings: TrainSettings):
    start = settings.steps * (1.0 - settings.decay_fraction)
    span = max(settings.steps - start, 1.0)
    return lambda step: 1.0 if step < start else max(0.0, 1.0 - (step - start) / span)


def discriminator_loss(d: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor, autocast) -> torch.Tensor:
    """A discriminator's least-squares objective: real slices towards 1, generated ones towards 0,
    halved as in CycleGAN (the discriminator then learns at half the generators' rate)."""
    with autocast():
        return 0.5 * (lsgan_loss(d(real).float(), True) + lsgan_loss(d(fake).float(), False))


class TrainingRun:
    """All mutable state of a synthesis training run (what a checkpoint holds), common to both kinds.

    Subclasses build their networks (:meth:`_networks`, created in a fixed order right after
    seeding, so the same seed gives the same weights), draw their batches (:meth:`sample`) and
    take one optimisation step (:meth:`train_step`, returning the values of
    :data:`LOSS_COLUMNS` by name); nothing here asks which model it is.
    """

    columns = LOSS_COLUMNS

    def __init__(self, settings: TrainSettings, device: torch.device):
        self.settings = settings
        self.device = device
        self.precision = resolve_precision(settings.amp, device)
        torch.manual_seed(settings.seed)
        s = settings
        self.nets: dict[str, torch.nn.Module] = self._networks()
        if s.channels_last:
            for net in self.nets.values():
                net.to(memory_format=torch.channels_last)
        self.optimisers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.data_rng = torch.Generator().manual_seed(s.seed + 1)
        self.pool_rng = torch.Generator().manual_seed(s.seed + 2)
        self.step = 0
        self.history: list[list[float]] = []
        self.validation: list[dict[str, float]] = []
        # G_CT with the lowest validation MAE so far (model selection on the validation subject)
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_step = 0

    @property
    def mr_channels(self) -> int:
        """Channels of an MR input: the slice and ``context_slices`` neighbours on either side."""
        return 2 * self.settings.context_slices + 1

    def generator_spec(self, in_channels: int, out_channels: int) -> GeneratorSpec:
        s = self.settings
        return GeneratorSpec(in_channels, out_channels, s.ngf, s.n_blocks, s.n_downsampling, s.upsampling)

    @property
    def g_ct_spec(self) -> GeneratorSpec:
        """The architecture of G_CT (MR slices in, one CT slice out): stored with its weights."""
        return self.generator_spec(self.mr_channels, 1)

    def _generator(self, spec: GeneratorSpec) -> torch.nn.Module:
        return init_weights(spec.build()).to(self.device)

    def _discriminator(self, channels: int) -> torch.nn.Module:
        s = self.settings
        return init_weights(PatchDiscriminator(channels, ndf=s.ndf, n_layers=s.n_layers)).to(self.device)

    def _optimise(self, name: str, nets: Sequence[torch.nn.Module]) -> None:
        """An Adam optimiser ``name`` ("g" or "d") over ``nets``, with the linear-decay schedule.

        Adam's fused kernel (one pass over all parameters; CPU and CUDA) does the arithmetic of
        the per-tensor loop in 1/3 of the time here (BENCHMARKS.md, *Training step at full speed*).
        """
        s = self.settings
        params = [p for net in nets for p in net.parameters()]
        fused = self.device.type in ("cpu", "cuda")
        self.optimisers[name] = torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, s.beta2), fused=fused)
        self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(self.optimisers[name], _linear_decay(s))

    @property
    def g_ct(self) -> torch.nn.Module:
        """The MR→CT generator: what the run is for."""
        return self.nets["g_ct"]

    def _networks(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def sample(self, mr_pool: torch.Tensor, ct_pool: torch.Tensor, transform) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch of MR and CT slices, drawn with the run's own generator."""
        raise NotImplementedError

    def train_step(self, mr: torch.Tensor, ct: torch.Tensor) -> dict[str, float]:
        """One optimisation step; returns the values of :data:`LOSS_COLUMNS` by name."""
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # -- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "step": self.step,
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            **{f"opt_{name}": opt.state_dict() for name, opt in self.optimisers.items()},
            **{f"sched_{name}": sched.state_dict() for name, sched in self.schedulers.items()},
            "rng_torch": torch.get_rng_state(),
            "rng_data": self.data_rng.get_state(),
            "rng_pool": self.pool_rng.get_state(),
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, len(self.columns)),
            "validation": json.dumps(self.validation),
            "best_step": self.best_step,
            "best_state": self.best_state if self.best_state is not None else {},
        }
        return {**state, **self._extra_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, net_state in state["nets"].items():
            self.nets[name].load_state_dict(net_state)
        for name, opt in self.optimisers.items():
            opt.load_state_dict(state[f"opt_{name}"])
            self.schedulers[name].load_state_dict(state[f"sched_{name}"])
        self._load_extra_state(state)
        torch.set_rng_state(state["rng_torch"])
        self.data_rng.set_state(state["rng_data"])
        self.pool_rng.set_state(state["rng_pool"])
        self.step = int(state["step"])
        self.history = state["history"].tolist()
        self.validation = json.loads(state["validation"])
        self.best_step = int(state["best_step"])
        self.best_state = state["best_state"] or None

    def remember_if_best(self, score: float) -> bool:
        """Keep a copy of G_CT when ``score`` (validation MAE) is the lowest so far."""
        previous = [v["mae"] for v in self.validation[:-1]]
        if self.best_state is not None and previous and score >= min(previous):
            return False
        self.best_state = {k: v.detach().clone() for k, v in self.g_ct.state_dict().items()}
        self.best_step = self.step
        return True

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


class SupervisedRun(TrainingRun):
    """``reference_supervised``: G_CT alone, L1 to the paired CT slice (one transform for both)."""

    def __init__(self, settings: TrainSettings, device: torch.device):
        super().__init__(settings, device)
        self._optimise("g", [self.g_ct])

    def _networks(self) -> dict[str, torch.nn.Module]:
        return {"g_ct": self._generator(self.g_ct_spec)}

    def sample(self, mr_pool: torch.Tensor, ct_pool: torch.Tensor, transform) -> tuple[torch.Tensor, torch.Tensor]:
        """Paired: the same slices of MR and CT, under one geometric transform."""
        index = torch.randint(0, len(mr_pool), (self.settings.batch_size,), generator=self.data_rng)
        mr, ct = transform([mr_pool[index], ct_pool[index]])
        return mr, ct

    def train_step(self, mr: torch.Tensor, ct: torch.Tensor) -> dict[str, float]:
        opt, sched = self.optimisers["g"], self.schedulers["g"]
        opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = cycle_loss(self.g_ct(mr).float(), ct)  # L1 to the paired CT
        loss.backward()
        opt.step()
        lr = sched.get_last_lr()[0]
        sched.step()
        values = dict.fromkeys(self.columns, 0.0)
        return {**values, "loss_g": float(loss.detach()), "gc_mr_to_ct": math.nan, "lr": lr}


class CycleGANRun(TrainingRun):
    """``cyclegan`` and ``cyclegan_gc``: two generators, two PatchGAN discriminators and image
    pools; the GC term enters the generators' loss with ``gc_weight`` (0 for ``cyclegan``).

    In 2.5D (``context_slices`` k > 0) an MR sample is a stack of 2k + 1 neighbouring slices:
    G_CT maps the stack to the CT of its middle slice, G_MR maps a CT slice to an MR stack, and
    D_MR judges stacks, so both cycles close (MR stack → CT → MR stack, CT → MR stack → CT).
    GC and MIND compare a CT slice with the middle slice of its MR stack.
    """

    def __init__(self, settings: TrainSettings, device: torch.device):
        super().__init__(settings, device)
        self._optimise("g", [self.nets["g_ct"], self.nets["g_mr"]])
        self._optimise("d", [self.nets["d_ct"], self.nets["d_mr"]])
        self.pool_ct = ImagePool(settings.pool_size, self.pool_rng)
        self.pool_mr = ImagePool(settings.pool_size, self.pool_rng)

    def _networks(self) -> dict[str, torch.nn.Module]:
        g_ct = self._generator(self.g_ct_spec)
        g_mr = self._generator(self.generator_spec(1, self.mr_channels))
        return {
            "g_ct": g_ct,
            "g_mr": g_mr,
            "d_ct": self._discriminator(1),
            "d_mr": self._discriminator(self.mr_channels),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"pool_ct": self.pool_ct.state(), "pool_mr": self.pool_mr.state()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.pool_ct.load(state["pool_ct"])
        self.pool_mr.load(state["pool_mr"])

    def sample(self, mr_pool: torch.Tensor, ct_pool: torch.Tensor, transform) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpaired: MR and CT slices drawn independently and transformed independently."""
        n = self.settings.batch_size
        mr_idx = torch.randint(0, len(mr_pool), (n,), generator=self.data_rng)
        ct_idx = torch.randint(0, len(ct_pool), (n,), generator=self.data_rng)
        (mr,), (ct,) = transform([mr_pool[mr_idx]]), transform([ct_pool[ct_idx]])
        return mr, ct

    def _middle(self, mr: torch.Tensor) -> torch.Tensor:
        k = self.settings.context_slices
        return mr[:, k : k + 1]

    def _generator_losses(self, mr: torch.Tensor, ct: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward passes of both generators; their total objective and its (unweighted) terms."""
        s = self.settings
        g_ct, g_mr, d_ct, d_mr = (self.nets[k] for k in ("g_ct", "g_mr", "d_ct", "d_mr"))
        with self._autocast():
            fake_ct = g_ct(mr)
            fake_mr = g_mr(ct)
            rec_mr = g_mr(fake_ct)
            rec_ct = g_ct(fake_mr)
            adv = lsgan_loss(d_ct(fake_ct).float(), True) + lsgan_loss(d_mr(fake_mr).float(), True)
        terms = {
            "fake_ct": fake_ct.float(),
            "fake_mr": fake_mr.float(),
            "adv": adv,
            "cycle": cycle_loss(rec_mr.float(), mr) + cycle_loss(rec_ct.float(), ct),
            "identity": torch.zeros((), device=mr.device),
            "mind_loss": torch.zeros((), device=mr.device),
        }
        loss = adv + s.lambda_cycle * terms["cycle"]
        if s.lambda_identity > 0:  # identity forwards only when weighted (needs as many MR as CT channels)
            with self._autocast():
                terms["identity"] = identity_loss(g_ct(ct).float(), ct) + identity_loss(g_mr(mr).float(), mr)
            loss = loss + s.lambda_identity * s.lambda_cycle * terms["identity"]
        mr_middle, fake_mr_middle = self._middle(mr), self._middle(terms["fake_mr"])
        # GC is logged for both arms (cheap); only cyclegan_gc backpropagates through it
        with torch.set_grad_enabled(s.gc_weight > 0):
            terms["gc_loss"] = gradient_consistency_loss(
                mr_middle, terms["fake_ct"], ct, fake_mr_middle, absolute=s.gc_absolute
            )
        if s.gc_weight > 0:
            loss = loss + s.gc_weight * terms["gc_loss"]
        if s.mind_weight > 0:
            terms["mind_loss"] = mind_loss(mr_middle, terms["fake_ct"], ct, fake_mr_middle)
            loss = loss + s.mind_weight * terms["mind_loss"]
        return loss, terms

    def train_step(self, mr: torch.Tensor, ct: torch.Tensor) -> dict[str, float]:
        s = self.settings
        d_ct, d_mr = self.nets["d_ct"], self.nets["d_mr"]
        for d in (d_ct, d_mr):
            d.requires_grad_(False)
        self.optimisers["g"].zero_grad(set_to_none=True)
        loss_g, terms = self._generator_losses(mr, ct)
        with torch.no_grad():
            gc_ct = float(gradient_consistency(self._middle(mr), terms["fake_ct"], absolute=s.gc_absolute))
        loss_g.backward()
        self.optimisers["g"].step()

        for d in (d_ct, d_mr):
            d.requires_grad_(True)
        self.optimisers["d"].zero_grad(set_to_none=True)
        pooled_ct = self.pool_ct.query(terms["fake_ct"].detach())
        pooled_mr = self.pool_mr.query(terms["fake_mr"].detach())
        loss_d = discriminator_loss(d_ct, ct, pooled_ct, self._autocast) + discriminator_loss(
            d_mr, mr, pooled_mr, self._autocast
        )
        loss_d.backward()
        self.optimisers["d"].step()
        lr = self.schedulers["g"].get_last_lr()[0]
        self.schedulers["g"].step()
        self.schedulers["d"].step()
        losses = {name: float(terms[name].detach()) for name in ("adv", "cycle", "identity", "gc_loss", "mind_loss")}
        return {
            "loss_g": float(loss_g.detach()),
            **losses,
            "loss_d": float(loss_d.detach()),
            "gc_mr_to_ct": gc_ct,
            "lr": lr,
        }


def new_run(settings: TrainSettings, device: torch.device) -> TrainingRun:
    """A fresh run of ``settings.model``: :class:`SupervisedRun` or :class:`CycleGANRun`."""
    return (SupervisedRun if settings.model == "reference_supervised" else CycleGANRun)(settings, device)


# --------------------------------------------------------------------------
# validation during training


def evaluate(
    generator: torch.nn.Module,
    subjects: Sequence[PreprocessedSubject],
    device: torch.device,
    bone_labels: Sequence[int] = (),
) -> tuple[dict[str, float], list[np.ndarray]]:
    """MAE and boundary MAE (HU, at training resolution, in the body) over validation subjects,
    and the predicted normalised CT slices of each subject.

    The bone is :func:`mr2ct.evaluation.metrics.bone_mask` (the union of ``bone_labels`` in a labelled
    cache, else the CT above 200 HU), as in the evaluation.
    """
    maes, boundary, predictions = [], [], []
    for subject in subjects:
        predictions.append(predict_ct(generator, subject.mr, device=device))
        fake = subject.ct_hu(predictions[-1])
        real = subject.ct_hu(subject.ct)
        mask = subject.mask > 0
        spacing = (float(abs(subject.affine[2, 2])) or 1.0, subject.grid.step_mm, subject.grid.step_mm)
        maes.append(mae(real, fake, mask))
        # at training resolution the band is one pixel on either side of the bone surface
        bone = bone_mask(real, subject.labels, bone_labels)
        boundary.append(mae_boundary(real, fake, mask, spacing, bone=bone, band_mm=subject.grid.step_mm))
    return {"mae": float(np.mean(maes)), "mae_boundary": float(np.nanmean(boundary))}, predictions


# --------------------------------------------------------------------------


@dataclass
class TrainingData:
    """What a run trains and validates on: slice pools of the training subjects, the validation
    subjects and the constant baseline (mean HU of the training CTs' bodies)."""

    mr_pool: torch.Tensor
    ct_pool: torch.Tensor
    validation: list[PreprocessedSubject]
    baseline_hu: float


def load_training_data(
    s: TrainSettings,
    mr_caches: Sequence[str | os.PathLike],
    ct_caches: Sequence[str | os.PathLike],
    validation_caches: Sequence[str | os.PathLike],
) -> TrainingData:
    """The run's slices from its caches; refuses crops larger than the slices and unpaired
    caches for the supervised reference."""
    mr_subjects = [load_preprocessed(p) for p in mr_caches]
    ct_subjects = [load_preprocessed(p) for p in ct_caches]
    val_subjects = [load_preprocessed(p) for p in validation_caches]
    mr_pool = slice_pool(mr_subjects, "mr", s.min_body_fraction, s.context_slices)
    ct_pool = slice_pool(ct_subjects, "ct", s.min_body_fraction)
    if s.crop_size > min(mr_pool.shape[-2:]):
        raise InputError(
            f"config key 'train.crop_size' ({s.crop_size}) exceeds the training slices "
            f"({mr_pool.shape[-1]} x {mr_pool.shape[-2]}, preprocess.image_size)"
        )
    if s.model == "reference_supervised" and len(mr_pool) != len(ct_pool):
        raise InputError("reference_supervised needs paired MR and CT caches of the same subjects")
    log.info(
        "model %s: %d MR slices from %d subject(s), %d CT slices from %d subject(s), %d validation subject(s)",
        s.model,
        len(mr_pool),
        len(mr_subjects),
        len(ct_pool),
        len(ct_subjects),
        len(val_subjects),
    )
    baseline_hu = float(np.mean([subj.ct_hu(subj.ct)[subj.mask > 0].mean() for subj in ct_subjects]))
    return TrainingData(mr_pool, ct_pool, val_subjects, baseline_hu)


def validation_callback(
    run: TrainingRun, data: TrainingData, device: torch.device, bone_labels: Sequence[int], out_dir: Path
) -> Callable[[], None]:
    """What the run does at each validation: score G_CT on the validation subjects (MAE, boundary
    MAE, constant baseline), remember the best G_CT, draw a montage, log one line."""
    from mr2ct.report.plotting import plot_montage

    val_subjects = data.validation

    def validate() -> None:
        if not val_subjects:
            return
        for net in run.nets.values():
            net.eval()
        scores, predictions = evaluate(run.g_ct, val_subjects, device, bone_labels)
        scores.update(
            step=run.step,
            baseline_constant_mae=float(
                np.mean([mae(v.ct_hu(v.ct), np.full_like(v.ct, data.baseline_hu), v.mask > 0) for v in val_subjects])
            ),
        )
        run.validation.append(scores)
        if run.step > 0:
            run.remember_if_best(scores["mae"])
        plot_montage(
            out_dir / "montages" / f"step{run.step:06d}.png",
            val_subjects[0],
            predictions[0],
            title=f"{run.settings.model}, step {run.step}: validation MAE {scores['mae']:.0f} HU",
        )
        for net in run.nets.values():
            net.train()
        log.info(
            "step %d: validation MAE %.1f HU, boundary MAE %.1f HU (constant baseline %.1f HU)",
            run.step,
            scores["mae"],
            scores["mae_boundary"],
            scores["baseline_constant_mae"],
        )

    return validate


def save_generator(run: TrainingRun, identity: Mapping[str, Any], path: Path) -> Path:
    """Write the selected G_CT (lowest validation MAE, else the last) with its spec to ``path``."""
    s = run.settings
    selected = run.best_state if run.best_state is not None else run.g_ct.state_dict()
    selected_step = run.best_step if run.best_state is not None else run.step
    log.info(
        "selected G_CT of step %d (lowest validation MAE)"
        if run.best_state is not None
        else "selected the final G_CT (step %d)",
        selected_step,
    )
    save_checkpoint(
        path,
        {
            "state_dict": selected,
            "spec": run.g_ct_spec.as_dict(),
            "precision": run.precision,
            "data": identity["data"],
            "digest": s.digest(),
            "model": s.model,
            "steps": s.steps,
            "selected_step": selected_step,
        },
    )
    return path


def train_run(
    settings: TrainSettings,
    mr_caches: Sequence[str | os.PathLike],
    ct_caches: Sequence[str | os.PathLike],
    validation_caches: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    progress: bool = True,
    bone_labels: Sequence[int] = (),
) -> Path:
    """Train one run into ``out_dir`` and return the path of its ``generator.pt``.

    ``bone_labels`` are the label ids of bone (for the boundary MAE of the validation log).

    For ``reference_supervised`` the MR and CT caches must be the same subjects
    (paired slices). Resumes from ``out_dir/checkpoint.pt`` when present and
    written by the same settings. With a time budget, stops after writing a
    checkpoint and raises :class:`~mr2ct.models.resumable.TrainingInterrupted`.
    """
    from mr2ct.report.plotting import plot_losses

    s = settings
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = training_device(s.device)
    started = time.monotonic()
    data = load_training_data(s, mr_caches, ct_caches, validation_caches)

    run = new_run(s, device)
    checkpoint = out_dir / "checkpoint.pt"
    log.info("precision %s (train.amp: %s, device %s)", run.precision, s.amp, device)
    provenance.note("precision", run.precision)
    identity = {
        "format": CHECKPOINT_FORMAT,
        "kind": s.model,
        "digest": s.digest(),
        "precision": run.precision,
        "data": data_identity(mr=mr_caches, ct=ct_caches, validation=validation_caches),
    }
    resume(run, checkpoint, identity)

    def transform(images: list[torch.Tensor]) -> list[torch.Tensor]:
        if s.augment:
            images = augment_geometry(images, run.data_rng)
        return random_crop(images, s.crop_size, run.data_rng) if s.crop_size else images

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        mr, ct = run.sample(data.mr_pool, data.ct_pool, transform)
        mr, ct = mr.to(device), ct.to(device)
        if s.channels_last:
            mr, ct = mr.contiguous(memory_format=torch.channels_last), ct.contiguous(memory_format=torch.channels_last)
        return mr, ct

    run_steps(
        run,
        s,
        checkpoint,
        identity,
        next_batch,
        validation_callback(run, data, device, bone_labels, out_dir),
        desc=f"train {s.model}",
        progress=progress,
        postfix={"G": "loss_g", "cyc": "cycle", "D": "loss_d"},
        started=started,
    )
    write_history(out_dir, run.history, LOSS_COLUMNS, run.validation)
    plot_losses(out_dir / "loss_curves.png", np.asarray(run.history), LOSS_COLUMNS, run.validation, title=f"{s.model}")
    return save_generator(run, identity, out_dir / "generator.pt")
