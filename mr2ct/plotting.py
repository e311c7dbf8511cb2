"""Figures: training curves and montages (evaluation figures join here).

Slices are shown in radiological orientation as cached (anterior up, patient's
right on the left). CT is displayed in a soft-tissue/bone window of
[−300, 1200] HU; every panel of a montage uses the same window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path  # noqa: E402

__all__ = ["CT_WINDOW", "plot_losses", "plot_montage", "save_figure"]

CT_WINDOW = (-300.0, 1200.0)
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "figure.dpi": 100})


def save_figure(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Save atomically (PNG or PDF by suffix) and close the figure."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=None if path.suffix == ".pdf" else {"Software": "mr2ct"})
    plt.close(fig)
    return path


def plot_losses(path, history: np.ndarray, columns: Sequence[str], validation: Sequence[dict], title: str = "") -> Path:
    """Generator/discriminator losses (smoothed) and validation MAE against step."""
    steps = np.arange(1, len(history) + 1)
    window = max(1, len(history) // 100)

    def smooth(v: np.ndarray) -> np.ndarray:
        if window == 1:
            return v
        return np.convolve(v, np.ones(window) / window, mode="same")

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    col = {c: i for i, c in enumerate(columns)}
    for name, label in (("loss_g", "generator total"), ("adv", "adversarial"), ("loss_d", "discriminator")):
        if history.size and np.any(history[:, col[name]]):
            axes[0].plot(steps, smooth(history[:, col[name]]), label=label, lw=1)
    axes[0].set(xlabel="step", ylabel="loss", title="adversarial and total losses")
    for name, label in (("cycle", "cycle (L1)"), ("gc_loss", "GC loss"), ("identity", "identity")):
        if history.size and np.any(np.nan_to_num(history[:, col[name]])):
            axes[1].plot(steps, smooth(history[:, col[name]]), label=label, lw=1)
    axes[1].set(xlabel="step", ylabel="loss", title="cycle / gradient consistency")
    for ax in axes[:2]:
        if ax.lines:
            ax.legend(frameon=False)
    if validation:
        v_steps = [v["step"] for v in validation]
        axes[2].plot(v_steps, [v["mae"] for v in validation], "o-", label="MAE (body)", ms=3)
        axes[2].plot(v_steps, [v["mae_boundary"] for v in validation], "s-", label="boundary MAE", ms=3)
        axes[2].axhline(validation[0]["baseline_constant_mae"], color="grey", ls="--", lw=1, label="constant baseline")
        axes[2].set(xlabel="step", ylabel="HU", title="validation subject")
        axes[2].legend(frameon=False)
    else:
        axes[2].axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_montage(path, subject, fake_ct_normalised: np.ndarray, title: str = "", levels=(0.2, 0.45, 0.75)) -> Path:
    """Rows: slice levels; columns: MR | real CT | synthetic CT | |error| (HU)."""
    real = subject.ct_hu(subject.ct)
    fake = subject.ct_hu(fake_ct_normalised)
    n = real.shape[0]
    fig, axes = plt.subplots(len(levels), 4, figsize=(8, 2.1 * len(levels)))
    for row, level in enumerate(levels):
        k = min(n - 1, int(level * n))
        panels = [
            (subject.mr[k], dict(cmap="gray", vmin=-1, vmax=1), "MR"),
            (real[k], dict(cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1]), "real CT"),
            (fake[k], dict(cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1]), "synthetic CT"),
            (np.abs(fake[k] - real[k]) * (subject.mask[k] > 0), dict(cmap="magma", vmin=0, vmax=500), "|error| (HU)"),
        ]
        for col, (image, kw, name) in enumerate(panels):
            ax = axes[row, col]
            im = ax.imshow(image, **kw)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(name)
            if col == 0:
                ax.set_ylabel(f"slice {k}")
        if row == len(levels) - 1:
            fig.colorbar(im, ax=axes[:, 3], shrink=0.6, label="HU")
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)
