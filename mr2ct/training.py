"""CycleGAN (± gradient consistency) and the paired supervised reference: training runs.

One run trains the networks of one (training size, model, fold) on the cached
axial slices of its training subjects (:mod:`mr2ct.preprocess`,
:mod:`mr2ct.splits`). Models:

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import provenance
from .io import InputError
from .losses import cycle_loss, gradient_consistency, gradient_consistency_loss, identity_loss, lsgan_loss
from .metrics import mae, mae_boundary
from .networks import PatchDiscriminator, ResnetGenerator, init_weights, training_device
from .preprocess import PreprocessedSubject, load_preprocessed
from .resumable import (
    CHECKPOINT_FORMAT,
    data_identity,
    load_checkpoint,
    resume,
    run_steps,
    save_checkpoint,
    write_history,
)
from .settings import MODELS, TrainSettings

__all__ = [
    "MODELS",
    "CycleGANRun",
    "SupervisedRun",
    "TrainSettings",
    "load_generator",
    "new_run",
    "predict_ct",
    "resolve_precision",
    "train_run",
]

log = logging.getLogger("mr2ct.training")

LOSS_COLUMNS = ("loss_g", "adv", "cycle", "identity", "gc_loss", "loss_d", "gc_mr_to_ct", "lr")


# --------------------------------------------------------------------------
# data


def _body_slices(subject: PreprocessedSubject, min_fraction: float) -> np.ndarray:
    fraction = subject.mask.reshape(subject.mask.shape[0], -1).mean(axis=1)
    return np.nonzero(fraction >= min_fraction)[0]


def _stack(subjects: Sequence[PreprocessedSubject], key: str, min_fraction: float) -> torch.Tensor:
    parts = [getattr(s, key)[_body_slices(s, min_fraction)] for s in subjects]
    return torch.from_numpy(np.concatenate(parts)).unsqueeze(1).contiguous()


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


class _Run:
    """All mutable state of a training run (what a checkpoint holds), common to both kinds of run.

    Subclasses build their networks (:meth:`_networks`, created in a fixed order right after
    seeding, so the same seed gives the same weights), draw their batches (:meth:`sample`) and
    take one optimisation step (:meth:`train_step`); nothing here asks which model it is.
    """

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

    def _generator(self) -> torch.nn.Module:
        s = self.settings
        net = ResnetGenerator(
            1, 1, ngf=s.ngf, n_blocks=s.n_blocks, n_downsampling=s.n_downsampling, upsampling=s.upsampling
        )
        return init_weights(net).to(self.device)

    def _discriminator(self) -> torch.nn.Module:
        s = self.settings
        return init_weights(PatchDiscriminator(1, ndf=s.ndf, n_layers=s.n_layers)).to(self.device)

    def _optimise(self, name: str, nets: Sequence[torch.nn.Module]) -> None:
        """An Adam optimiser ``name`` ("g" or "d") over ``nets``, with the linear-decay schedule."""
        s = self.settings
        params = [p for net in nets for p in net.parameters()]
        self.optimisers[name] = torch.optim.Adam(params, lr=s.lr, betas=(s.beta1, s.beta2))
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

    def train_step(self, mr: torch.Tensor, ct: torch.Tensor) -> list[float]:
        """One optimisation step; returns the values of :data:`LOSS_COLUMNS`."""
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
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, len(LOSS_COLUMNS)),
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


class SupervisedRun(_Run):
    """``reference_supervised``: G_CT alone, L1 to the paired CT slice (one transform for both)."""

    def __init__(self, settings: TrainSettings, device: torch.device):
        super().__init__(settings, device)
        self._optimise("g", [self.g_ct])

    def _networks(self) -> dict[str, torch.nn.Module]:
        return {"g_ct": self._generator()}

    def sample(self, mr_pool: torch.Tensor, ct_pool: torch.Tensor, transform) -> tuple[torch.Tensor, torch.Tensor]:
        """Paired: the same slices of MR and CT, under one geometric transform."""
        index = torch.randint(0, len(mr_pool), (self.settings.batch_size,), generator=self.data_rng)
        mr, ct = transform([mr_pool[index], ct_pool[index]])
        return mr, ct

    def train_step(self, mr: torch.Tensor, ct: torch.Tensor) -> list[float]:
        opt, sched = self.optimisers["g"], self.schedulers["g"]
        opt.zero_grad(set_to_none=True)
        with self._autocast():
            loss = cycle_loss(self.g_ct(mr).float(), ct)  # L1 to the paired CT
        loss.backward()
        opt.step()
        sched.step()
        return [float(loss.detach()), 0.0, 0.0, 0.0, 0.0, 0.0, math.nan, sched.get_last_lr()[0]]


class CycleGANRun(_Run):
    """``cyclegan`` and ``cyclegan_gc``: two generators, two PatchGAN discriminators and image
    pools; the GC term enters the generators' loss with ``gc_weight`` (0 for ``cyclegan``)."""

    def __init__(self, settings: TrainSettings, device: torch.device):
        super().__init__(settings, device)
        self._optimise("g", [self.nets["g_ct"], self.nets["g_mr"]])
        self._optimise("d", [self.nets["d_ct"], self.nets["d_mr"]])
        self.pool_ct = ImagePool(settings.pool_size, self.pool_rng)
        self.pool_mr = ImagePool(settings.pool_size, self.pool_rng)

    def _networks(self) -> dict[str, torch.nn.Module]:
        g_ct, g_mr = self._generator(), self._generator()
        return {"g_ct": g_ct, "g_mr": g_mr, "d_ct": self._discriminator(), "d_mr": self._discriminator()}

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

    def train_step(self, mr: torch.Tensor, ct: torch.Tensor) -> list[float]:
        s = self.settings
        g_ct, g_mr, d_ct, d_mr = (self.nets[k] for k in ("g_ct", "g_mr", "d_ct", "d_mr"))
        for d in (d_ct, d_mr):
            d.requires_grad_(False)
        self.optimisers["g"].zero_grad(set_to_none=True)
        with self._autocast():
            fake_ct = g_ct(mr)
            fake_mr = g_mr(ct)
            rec_mr = g_mr(fake_ct)
            rec_ct = g_ct(fake_mr)
            adv = lsgan_loss(d_ct(fake_ct).float(), True) + lsgan_loss(d_mr(fake_mr).float(), True)
        fake_ct, fake_mr = fake_ct.float(), fake_mr.float()
        cyc = cycle_loss(rec_mr.float(), mr) + cycle_loss(rec_ct.float(), ct)
        loss_g = adv + s.lambda_cycle * cyc
        idt = torch.zeros((), device=mr.device)
        if s.lambda_identity > 0:  # identity forwards only when weighted
            with self._autocast():
                idt = identity_loss(g_ct(ct).float(), ct) + identity_loss(g_mr(mr).float(), mr)
            loss_g = loss_g + s.lambda_identity * s.lambda_cycle * idt
        # GC is logged for both arms (cheap); only cyclegan_gc backpropagates through it
        with torch.set_grad_enabled(s.gc_weight > 0):
            gcl = gradient_consistency_loss(mr, fake_ct, ct, fake_mr, absolute=s.gc_absolute)
        if s.gc_weight > 0:
            loss_g = loss_g + s.gc_weight * gcl
        with torch.no_grad():
            gc_ct = float(gradient_consistency(mr, fake_ct, absolute=s.gc_absolute))
        loss_g.backward()
        self.optimisers["g"].step()

        for d in (d_ct, d_mr):
            d.requires_grad_(True)
        self.optimisers["d"].zero_grad(set_to_none=True)
        pooled_ct = self.pool_ct.query(fake_ct.detach())
        pooled_mr = self.pool_mr.query(fake_mr.detach())
        with self._autocast():
            loss_d = 0.5 * (lsgan_loss(d_ct(ct).float(), True) + lsgan_loss(d_ct(pooled_ct).float(), False))
            loss_d = loss_d + 0.5 * (lsgan_loss(d_mr(mr).float(), True) + lsgan_loss(d_mr(pooled_mr).float(), False))
        loss_d.backward()
        self.optimisers["d"].step()
        lr = self.schedulers["g"].get_last_lr()[0]
        self.schedulers["g"].step()
        self.schedulers["d"].step()
        return [*(float(v.detach()) for v in (loss_g, adv, cyc, idt, gcl, loss_d)), gc_ct, lr]


def new_run(settings: TrainSettings, device: torch.device) -> _Run:
    """A fresh run of ``settings.model``: :class:`SupervisedRun` or :class:`CycleGANRun`."""
    return (SupervisedRun if settings.model == "reference_supervised" else CycleGANRun)(settings, device)


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively, as torch reports it (not guessed from a CPU name)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    caps = torch.cpu.get_capabilities()
    return any(bool(caps.get(flag)) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def resolve_precision(amp: str, device: torch.device) -> str:
    """``"bf16"`` (autocast) or ``"fp32"`` for the setting ``train.amp`` on ``device``."""
    if amp == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return "bf16" if amp == "bf16" else "fp32"


def load_generator(path: str | os.PathLike, device: str = "cpu") -> torch.nn.Module:
    """The MR→CT generator of a finished run (``generator.pt``), in eval mode."""
    state = load_checkpoint(path)
    if not isinstance(state, dict) or "state_dict" not in state or "ngf" not in state:
        raise InputError(f"{path}: not an mr2ct generator file")
    net = ResnetGenerator(
        1,
        1,
        ngf=int(state["ngf"]),
        n_blocks=int(state["n_blocks"]),
        n_downsampling=int(state["n_downsampling"]),
        upsampling=str(state["upsampling"]),
    )
    net.load_state_dict(state["state_dict"])
    return net.to(device).eval()


# --------------------------------------------------------------------------
# validation during training


@torch.inference_mode()
def predict_ct(
    generator: torch.nn.Module, mr_slices: np.ndarray, batch_size: int = 16, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Apply G_CT slice-wise to normalised MR slices ``(Z, H, W)``; returns normalised CT ``(Z, H, W)``."""
    out = np.empty_like(mr_slices, dtype=np.float32)
    for start in range(0, len(mr_slices), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(mr_slices[start : start + batch_size])).unsqueeze(1).to(device)
        out[start : start + batch_size] = generator(batch).float().squeeze(1).cpu().numpy()
    return out


def evaluate(
    generator: torch.nn.Module,
    subjects: Sequence[PreprocessedSubject],
    device: torch.device,
    bone_labels: Sequence[int] = (),
) -> dict[str, float]:
    """MAE and boundary MAE (HU, at training resolution, in the body) over validation subjects.

    The bone is the union of ``bone_labels`` (:func:`mr2ct.evaluation.bone_label_ids` of the
    label table) in a labelled cache, else the CT above 200 HU, as in the evaluation.
    """
    maes, boundary = [], []
    for subject in subjects:
        fake = subject.ct_hu(predict_ct(generator, subject.mr, device=device))
        real = subject.ct_hu(subject.ct)
        mask = subject.mask > 0
        spacing = (float(abs(subject.affine[2, 2])) or 1.0, subject.grid.step_mm, subject.grid.step_mm)
        maes.append(mae(real, fake, mask))
        # at training resolution the band is one pixel on either side of the bone surface
        bone = np.isin(subject.labels, bone_labels) if subject.labels is not None and len(bone_labels) else None
        boundary.append(mae_boundary(real, fake, mask, spacing, bone=bone, band_mm=subject.grid.step_mm))
    return {"mae": float(np.mean(maes)), "mae_boundary": float(np.nanmean(boundary))}


# --------------------------------------------------------------------------


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
    checkpoint and raises :class:`~mr2ct.resumable.TrainingInterrupted`.
    """
    from .plotting import plot_losses, plot_montage

    s = settings
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = training_device(s.device)
    started = time.monotonic()

    mr_subjects = [load_preprocessed(p) for p in mr_caches]
    ct_subjects = [load_preprocessed(p) for p in ct_caches]
    val_subjects = [load_preprocessed(p) for p in validation_caches]
    mr_pool = _stack(mr_subjects, "mr", s.min_body_fraction)
    ct_pool = _stack(ct_subjects, "ct", s.min_body_fraction)
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

    def validate() -> None:
        if not val_subjects:
            return
        for net in run.nets.values():
            net.eval()
        scores = evaluate(run.g_ct, val_subjects, device, bone_labels)
        scores.update(
            step=run.step,
            baseline_constant_mae=float(
                np.mean([mae(v.ct_hu(v.ct), np.full_like(v.ct, baseline_hu), v.mask > 0) for v in val_subjects])
            ),
        )
        run.validation.append(scores)
        if run.step > 0:
            run.remember_if_best(scores["mae"])
        subject = val_subjects[0]
        plot_montage(
            out_dir / "montages" / f"step{run.step:06d}.png",
            subject,
            predict_ct(run.g_ct, subject.mr, device=device),
            title=f"{s.model}, step {run.step}: validation MAE {scores['mae']:.0f} HU",
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

    def transform(images: list[torch.Tensor]) -> list[torch.Tensor]:
        if s.augment:
            images = augment_geometry(images, run.data_rng)
        return random_crop(images, s.crop_size, run.data_rng) if s.crop_size else images

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        mr, ct = run.sample(mr_pool, ct_pool, transform)
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
        validate,
        desc=f"train {s.model}",
        progress=progress,
        postfix={"G": 0, "cyc": 2, "D": 5},
        started=started,
    )
    write_history(out_dir, run.history, LOSS_COLUMNS, run.validation)
    plot_losses(out_dir / "loss_curves.png", np.asarray(run.history), LOSS_COLUMNS, run.validation, title=f"{s.model}")
    generator_path = out_dir / "generator.pt"
    selected = run.best_state if run.best_state is not None else run.g_ct.state_dict()
    selected_step = run.best_step if run.best_state is not None else run.step
    log.info(
        "selected G_CT of step %d (lowest validation MAE)"
        if run.best_state is not None
        else "selected the final G_CT (step %d)",
        selected_step,
    )
    save_checkpoint(
        generator_path,
        {
            "state_dict": selected,
            "ngf": s.ngf,
            "n_blocks": s.n_blocks,
            "n_downsampling": s.n_downsampling,
            "upsampling": s.upsampling,
            "precision": run.precision,
            "data": identity["data"],
            "digest": s.digest(),
            "model": s.model,
            "steps": s.steps,
            "selected_step": selected_step,
        },
    )
    return generator_path
