"""Figures of single runs and subjects: a run's loss curves and validation montages, the
qualitative figure (figure 4), the segmenter's curves and a registration's QC picture; the
figures drawn from the result tables live in :mod:`mr2ct.report.figures`.

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

from mr2ct.data.io import atomic_path  # noqa: E402
from mr2ct.provenance.figure_identity import identity_metadata  # noqa: E402

__all__ = [
    "CT_WINDOW",
    "hip_slice",
    "plot_losses",
    "plot_montage",
    "plot_qualitative",
    "plot_registration_qc",
    "registration_qc",
    "plot_segmentation_losses",
    "radiological",
    "save_figure",
    "save_png_pdf",
    "smooth",
]

CT_WINDOW = (-300.0, 1200.0)
plt.rcParams.update({"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "figure.dpi": 100})


def save_figure(fig, path: str | os.PathLike, dpi: int = 150, close: bool = True) -> Path:
    """Save atomically (PNG or PDF by suffix) and, unless ``close=False``, close the figure."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # the job's provenance identity (record id, commit, config hash) travels inside the file;
        # no creation date, so the same figure gives the same bytes
        identity = identity_metadata(path.suffix)
        if path.suffix == ".pdf":
            metadata = {"CreationDate": None, **identity}
        else:
            metadata = {"Software": "mr2ct", **identity}
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", metadata=metadata)
    if close:
        plt.close(fig)
    return path


def save_png_pdf(fig, path_stem: str | os.PathLike, dpi: int = 300) -> list[Path]:
    """Save a figure as ``<stem>.png`` (``dpi``) and ``<stem>.pdf``, atomically, and close it.

    A ``.png``/``.pdf`` suffix given with the stem is dropped.
    """
    stem = Path(path_stem)
    if stem.suffix.lower() in (".png", ".pdf"):
        stem = stem.with_suffix("")
    png = save_figure(fig, stem.with_name(stem.name + ".png"), dpi=dpi, close=False)
    return [png, save_figure(fig, stem.with_name(stem.name + ".pdf"), dpi=dpi)]


def smooth(values, window: int) -> np.ndarray:
    """Centred moving average over ``window`` steps (shorter at the ends, never padded with zeros)."""
    import pandas as pd

    return (
        pd.Series(np.asarray(values, dtype=np.float64))
        .rolling(max(1, int(window)), center=True, min_periods=1)
        .mean()
        .to_numpy()
    )


def plot_losses(path, history: np.ndarray, columns: Sequence[str], validation: Sequence[dict], title: str = "") -> Path:
    """Generator/discriminator losses (smoothed over 1 % of the run) and validation MAE against step."""
    steps = np.arange(1, len(history) + 1)
    window = max(1, len(history) // 100)

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    col = {c: i for i, c in enumerate(columns)}
    for name, label in (("loss_g", "generator total"), ("adv", "adversarial"), ("loss_d", "discriminator")):
        if history.size and np.any(history[:, col[name]]):
            axes[0].plot(steps, smooth(history[:, col[name]], window), label=label, lw=1)
    axes[0].set(xlabel="step", ylabel="loss", title="adversarial and total losses")
    for name, label in (("cycle", "cycle (L1)"), ("gc_loss", "GC loss"), ("identity", "identity")):
        if history.size and np.any(np.nan_to_num(history[:, col[name]])):
            axes[1].plot(steps, smooth(history[:, col[name]], window), label=label, lw=1)
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
    fig, axes = plt.subplots(len(levels), 4, figsize=(8.4, 2.1 * len(levels)), layout="constrained")
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


def radiological(axial: np.ndarray) -> np.ndarray:
    """An axial slice of a canonical RAS+ volume ``(X, Y)`` as displayed: anterior up, patient's right on the left."""
    return np.rot90(axial)[:, ::-1]


def hip_slice(labels: np.ndarray, femur_ids: Sequence[int]) -> int:
    """The axial slice with the most femur voxels in the upper half of the femora (through the femoral heads)."""
    femur = np.isin(labels, femur_ids)
    area = femur.reshape(-1, femur.shape[2]).sum(axis=0)
    present = np.nonzero(area)[0]
    if present.size == 0:
        return labels.shape[2] // 2
    upper = present[present >= (present[0] + present[-1]) // 2]
    return int(upper[np.argmax(area[upper])])


def plot_qualitative(
    path_stem: str | os.PathLike,
    mr: np.ndarray,
    ct: np.ndarray,
    synthetic: dict[str, np.ndarray],
    mask: np.ndarray,
    labels: np.ndarray | None,
    spacing: Sequence[float],
    femur_ids: Sequence[int] = (2, 3),
    subject: str = "",
) -> list[Path]:
    """Figure 4: MR, real CT, synthetic CTs and their |error| on the slice through the hip joints.

    Volumes are canonical ``(X, Y, Z)`` arrays at the subject's resolution;
    ``synthetic`` maps a panel label (e.g. "CycleGAN") to a synthetic CT. Two
    rows, every panel filled: the first column shows the MR above the real CT,
    each further column a synthetic CT above its |error| map. All CT panels
    share the window ``CT_WINDOW`` (colour bar on the right of the first row);
    error maps share [0, 500] HU (colour bar of the second row) and are zero
    outside the body. Each image panel has an inset zooming on the patient's
    right hip joint.
    """
    from mpl_toolkits.axes_grid1.inset_locator import mark_inset

    k = hip_slice(labels, femur_ids) if labels is not None else ct.shape[2] // 2
    body = radiological(mask[:, :, k] > 0)
    ct_k = radiological(ct[:, :, k])
    mr_k = radiological(mr[:, :, k])
    lo, hi = np.percentile(mr_k[body], [1, 99]) if body.any() else (mr_k.min(), mr_k.max())
    panels = [
        ("MR (T1-like)", mr_k, dict(cmap="gray", vmin=lo, vmax=hi)),
        ("real CT", ct_k, dict(cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1])),
    ]
    errors = []
    for name, volume in synthetic.items():
        fake_k = radiological(volume[:, :, k])
        panels.append((f"synthetic CT: {name}", fake_k, dict(cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1])))
        errors.append((f"|error|: {name}", np.abs(fake_k - ct_k) * body, dict(cmap="magma", vmin=0, vmax=500)))
    # zoom box around the patient's right femoral head (left side of the image)
    if labels is not None:
        head = radiological(np.isin(labels[:, :, k], femur_ids[:1]))
        rows, cols = np.nonzero(head) if head.any() else np.nonzero(body)
    else:
        rows, cols = np.nonzero(body)
    r0, c0 = int(np.mean(rows)), int(np.mean(cols))
    half = int(round(40.0 / float(spacing[0])))
    aspect = float(spacing[1]) / float(spacing[0])
    # two full rows, no empty panel: MR above the real CT, each synthetic CT above its error map
    columns = [(panels[0], panels[1]), *zip(panels[2:], errors)]
    height, width = ct_k.shape[0] * aspect, ct_k.shape[1]
    fig, axes = plt.subplots(
        2,
        len(columns),
        figsize=(1.9 * len(columns) + 0.9, 2 * 1.9 * height / width + 0.8),
        squeeze=False,
        layout="constrained",
    )
    shown = {}
    for col, pair in enumerate(columns):
        for row, (name, image, kw) in enumerate(pair):
            ax = axes[row, col]
            ax.axis("off")
            shown[(row, col)] = ax.imshow(image, aspect=aspect, interpolation="nearest", **kw)
            ax.set_title(name, fontsize=8)
            inset = ax.inset_axes([0.58, 0.0, 0.42, 0.42])
            inset.imshow(image, aspect=aspect, interpolation="nearest", **kw)
            inset.set_xlim(c0 - half, c0 + half)
            inset.set_ylim(r0 + half, r0 - half)
            inset.set_xticks([]), inset.set_yticks([])
            for spine in inset.spines.values():
                spine.set_edgecolor("yellow")
            mark_inset(ax, inset, loc1=2, loc2=3, fc="none", ec="yellow", lw=0.6)
    if len(columns) > 1:
        bar = fig.colorbar(shown[(0, len(columns) - 1)], ax=axes[0, 1:], shrink=0.85, pad=0.02)
        bar.set_label("CT (HU)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
        bar = fig.colorbar(shown[(1, len(columns) - 1)], ax=axes[1, 1:], shrink=0.85, pad=0.02)
        bar.set_label("|error| (HU)", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(f"{subject}, axial slice {k} through the hip joints (insets: the patient's right hip)", fontsize=8)
    return save_png_pdf(fig, path_stem, dpi=200)


def _mr_edges(image: np.ndarray, body: np.ndarray, share: float = 0.12) -> np.ndarray:
    """The strongest edges of an MR slice: the ``share`` of body pixels with the largest gradient magnitude."""
    from scipy import ndimage

    magnitude = ndimage.gaussian_gradient_magnitude(image.astype(np.float32), sigma=1.0)
    inside = magnitude[body] if body.any() else magnitude.ravel()
    return magnitude >= np.quantile(inside, 1.0 - share) if inside.size else np.zeros_like(body)


def registration_qc(
    path: str | os.PathLike, ct: str | os.PathLike, mr: str | os.PathLike, subject: str, row: str | os.PathLike
) -> Path:
    """:func:`plot_registration_qc` of a CT file, the registered MR file and the registration's one-row table."""
    import pandas as pd

    from mr2ct.data.io import read_volume

    summary = pd.read_csv(row, sep="\t").iloc[0].to_dict()
    return plot_registration_qc(path, read_volume(ct), read_volume(mr), subject, summary)


#: the registration QC's MR edges: one opaque orange, visible on every grey of the CT
EDGE_COLOUR = matplotlib.colors.ListedColormap(["#ff7f0e"])


def plot_registration_qc(path: str | os.PathLike, ct, mr, subject: str, summary: dict | None = None) -> Path:
    """The CT of a subject with the edges of its registered MR drawn over it, in the axial, coronal and
    sagittal planes through the centre of the body: aligned images show the MR's bone and body outlines
    on the CT's. ``ct`` and ``mr`` are :class:`~mr2ct.data.io.Volume` on one grid."""
    from scipy import ndimage

    body = ct.data > -500.0
    centre = [int(round(c)) for c in ndimage.center_of_mass(body)] if body.any() else [n // 2 for n in body.shape]
    sx, sy, sz = (float(v) for v in ct.spacing)
    planes = [  # (title, slice of a (X, Y, Z) array, row spacing / column spacing of the displayed image)
        (f"axial {centre[2]}", np.s_[:, :, centre[2]], sy / sx),
        (f"coronal {centre[1]}", np.s_[:, centre[1], :], sz / sx),
        (f"sagittal {centre[0]}", np.s_[centre[0], :, :], sz / sy),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(10.0, 3.8), layout="constrained")
    for ax, (title, where, aspect) in zip(axes, planes):
        ct_k, mr_k, body_k = (radiological(a[where]) for a in (ct.data, mr.data, body))
        ax.imshow(ct_k, cmap="gray", vmin=CT_WINDOW[0], vmax=CT_WINDOW[1], aspect=aspect, interpolation="nearest")
        edges = np.ma.masked_where(~_mr_edges(mr_k, body_k), np.ones_like(mr_k))
        ax.imshow(edges, cmap=EDGE_COLOUR, vmin=0, vmax=1, alpha=0.85, aspect=aspect, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    detail = ""
    if summary:
        detail = f" ({summary.get('method', '')}; Mattes MI {summary.get('metric', float('nan')):.3f})"
    fig.suptitle(f"{subject}: CT with the edges of the registered MR (orange){detail}", fontsize=9)
    return save_figure(fig, path, dpi=110)


def plot_segmentation_losses(path: str | os.PathLike, history: np.ndarray, validation: Sequence[dict]) -> Path:
    """Training losses (smoothed) and validation mean Dice against step."""
    steps = np.arange(1, len(history) + 1)
    window = max(1, len(history) // 50)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for col, label in ((0, "total"), (1, "cross-entropy"), (2, "soft Dice loss")):
        if history.size:
            axes[0].plot(steps, smooth(history[:, col], window), label=label, lw=1)
    axes[0].set(xlabel="step", ylabel="loss", title="training losses (real CT)")
    if axes[0].lines:
        axes[0].legend(frameon=False)
    if validation:
        axes[1].plot([v["step"] for v in validation], [v["mean_dice"] for v in validation], "o-", ms=3)
        axes[1].set(xlabel="step", ylabel="mean Dice (foreground)", title="validation subjects", ylim=(0, 1))
    else:
        axes[1].axis("off")
    fig.suptitle("CT segmentation network")
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------
# applying a trained segmenter
