"""Publication figures of the two experiments (matplotlib; seaborn for per-subject distributions).

Every figure is written twice, as ``<stem>.png`` (300 dpi) and ``<stem>.pdf``
(vector, TrueType fonts embedded), through :func:`mr2ct.report.plotting.save_figure`
(atomic writes), and every plotting function returns the written paths.
Figures are sized for a two-column paper: single column 3.5 in wide, double
column 7 in, 7–8 pt text. Figures carry no titles (the captions in
``report/*.rst`` say what is shown); axes are labelled with units.

Models keep one colour, marker and line style everywhere (:data:`MODEL_STYLE`):
the two CycleGAN arms are drawn as means with 95 % confidence bands and
individual subjects, references and baselines as plain lines.

Figures (default file stems in :data:`FIGURE_STEMS`):

* :func:`plot_metric_vs_size` -- MAE, PSNR, boundary MAE (or SSIM) against the
  number of training volumes (figures 1–3);
* :func:`plot_segmentation_by_structure` -- Dice per structure of the real CT
  and of both arms' synthetic CT (figure 5);
* :func:`plot_surface_distances` -- ASSD and HD95 per structure (figure 6);
* :func:`plot_training_curves` -- smoothed losses against training step
  (figure 7).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.legend_handler import HandlerTuple  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from mr2ct.data.io import read_volume  # noqa: E402
from mr2ct.evaluation.scoring import SubjectInputs, label_names  # noqa: E402
from mr2ct.evaluation.statistics import N_BOOT, bootstrap_mean_ci  # noqa: E402
from mr2ct.report.plotting import plot_qualitative, save_png_pdf, smooth  # noqa: E402
from mr2ct.report.tables import METRIC_LABEL  # noqa: E402
from mr2ct.settings import ARMS, FIGURE_STEMS, MODEL_LABELS, MODEL_ORDER  # noqa: E402

__all__ = [
    "ARMS",
    "FIGURE_STEMS",
    "MODEL_STYLE",
    "SINGLE_COLUMN_IN",
    "DOUBLE_COLUMN_IN",
    "plot_metric_vs_size",
    "plot_segmentation_by_structure",
    "plot_surface_distances",
    "plot_training_curves",
    "pretty_structure",
    "qualitative_job",
    "read_loss_tables",
    "render_all",
]

SINGLE_COLUMN_IN = 3.5
DOUBLE_COLUMN_IN = 7.0
PNG_DPI = 300

#: Colour (Okabe–Ito palette where possible), marker and line style of each model /
#: segmentation source; labels from :data:`mr2ct.settings.MODEL_LABELS`. The two arms
#: (:data:`mr2ct.settings.ARMS`) are drawn with confidence bands and subject points.
MODEL_STYLE: dict[str, dict[str, str]] = {
    model: {"label": MODEL_LABELS[model], **style}
    for model, style in {
        "cyclegan": {"color": "#E69F00", "marker": "o", "linestyle": "-"},
        "cyclegan_gc": {"color": "#0072B2", "marker": "s", "linestyle": "-"},
        "reference_supervised": {"color": "#009E73", "marker": "^", "linestyle": "--"},
        "baseline_constant": {"color": "#8C8C8C", "marker": "x", "linestyle": ":"},
        "baseline_histmatch": {"color": "#7B3294", "marker": "d", "linestyle": ":"},
        "reference_resampled": {"color": "#000000", "marker": "+", "linestyle": "-."},
        "real_ct": {"color": "#4D4D4D", "marker": "D", "linestyle": "-"},
    }.items()
}


#: Matplotlib settings of every figure (applied in a context, nothing global).
_RC = {
    "font.size": 8,
    "axes.labelsize": 8,
    "axes.titlesize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "lines.linewidth": 1.2,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.pad_inches": 0.02,
    "figure.dpi": 100,
}


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _style(model: str) -> dict[str, str]:
    """Style of a model; unknown models get a neutral grey."""
    return MODEL_STYLE.get(model, {"color": "#999999", "label": model, "marker": "o", "linestyle": "-"})


def _ordered(models: Iterable[str]) -> list[str]:
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return sorted(dict.fromkeys(models), key=lambda m: (rank.get(m, len(rank)), str(m)))


def _finite_or_nan(values) -> np.ndarray:
    """Values as float64, anything that is not a finite number as NaN."""
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(v), v, np.nan)


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def pretty_structure(name: str) -> str:
    """Display name of a structure: ``"gluteus_maximus_right"`` → ``"gluteus maximus R"``."""
    parts = [p for p in re.split(r"[_\s]+", str(name).strip()) if p]
    side = {"left": "L", "right": "R", "l": "L", "r": "R"}
    if len(parts) > 1 and parts[-1].lower() in side:
        return " ".join(parts[:-1]) + " " + side[parts[-1].lower()]
    return " ".join(parts)


def _step_formatter(max_step: float) -> FuncFormatter:
    if max_step >= 10000:
        return FuncFormatter(lambda x, _: f"{x / 1000:g}k")
    return FuncFormatter(lambda x, _: f"{x:g}")


# --------------------------------------------------------------------------- #
# figures 1–3: metric against training-set size
# --------------------------------------------------------------------------- #
def plot_metric_vs_size(
    synthesis: pd.DataFrame,
    metric: str,
    path_stem: str | os.PathLike,
    arms: Sequence[str] = ARMS,
    n_boot: int = N_BOOT,
    seed: int = 0,
    width_in: float = SINGLE_COLUMN_IN,
) -> list[Path]:
    """A synthesis metric against the number of training volumes.

    For each arm of ``arms`` (CycleGAN without and with GC) and each size: the
    mean over all test subjects of all folds (one value per ``(fold,
    subject)``, and seed with ``splits.replicates``) as a line with markers, its 95 % **percentile bootstrap**
    confidence interval (``n_boot`` resamples of the subjects,
    :func:`mr2ct.evaluation.statistics.bootstrap_mean_ci`, seeded) as a band, and every
    subject as a small semi-transparent point (jittered sideways; the two arms
    are dodged apart so they do not overlap). Every other model in the table
    (supervised reference, baselines, resampled real CT) is drawn as a plain
    line through its per-size means, without band or points.

    Non-finite values (NaN, ±inf) are ignored; a model absent from the table
    is left out; a size with a single subject has no band.

    Parameters
    ----------
    synthesis:
        Rows of ``synthesis_metrics.csv`` (``size, model, fold, subject`` and ``metric``).
    metric:
        ``"mae"`` [HU], ``"psnr"`` [dB], ``"ssim"`` or ``"mae_boundary"`` [HU].
    path_stem:
        Output path without suffix (e.g. ``figures/mae_vs_training_size``).
    arms:
        Models drawn with bands and subject points.
    n_boot, seed:
        Bootstrap resamples and seed of the bands (the seed also fixes the jitter).
    width_in:
        Figure width in inches (single column by default).

    Returns
    -------
    list[pathlib.Path]
        The PNG and PDF paths.
    """
    if metric not in synthesis.columns:
        raise KeyError(f"plot_metric_vs_size: no column '{metric}' in the table ({list(synthesis.columns)})")
    data = synthesis.assign(
        size=pd.to_numeric(synthesis["size"], errors="coerce"),
        value=pd.to_numeric(synthesis[metric], errors="coerce"),
    )
    data = data[np.isfinite(data["size"]) & np.isfinite(data["value"])]
    sizes = np.sort(data["size"].unique())
    rng = np.random.default_rng(seed)
    spacing = float(np.min(np.diff(sizes))) if sizes.size > 1 else 1.0
    present = _ordered(data["model"].unique())
    arms_present = [m for m in arms if m in present]
    dodge = {m: (i - (len(arms_present) - 1) / 2) * 0.09 * spacing for i, m in enumerate(arms_present)}

    # matplotlib, not seaborn: the x axis is numeric (training volumes), and the bands must be
    # the bootstrap of mr2ct.evaluation.statistics (one owner of the confidence intervals)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, 0.78 * width_in), layout="constrained")
        handles, labels = [], []
        for model in present:
            sub = data[data["model"] == model]
            series = _size_series(sub, sizes, with_ci=model in arms_present, n_boot=n_boot, seed=seed)
            if series is None:
                continue
            if model in arms_present:
                handles.append(_draw_arm(ax, model, sub, series, dodge[model], spacing, rng))
            else:
                handles.append(_draw_reference(ax, model, series))
            labels.append(_style(model)["label"])
        _size_axes(ax, sizes, spacing, metric)
        if handles:
            fig.legend(
                handles,
                labels,
                loc="outside lower center",
                ncol=2,
                handlelength=2.4,
                handler_map={tuple: HandlerTuple(ndivide=1)},
                columnspacing=1.2,
            )
        return save_png_pdf(fig, path_stem, dpi=PNG_DPI)


def _size_series(sub: pd.DataFrame, sizes: np.ndarray, with_ci: bool, n_boot: int, seed: int):
    """Per-size means of one model (and bootstrap CI bounds): ``(xs, means, lows, highs)`` or None."""
    xs, means, lows, highs = [], [], [], []
    for s in sizes:
        v = sub.loc[sub["size"] == s, "value"].to_numpy(dtype=np.float64)
        if not v.size:
            continue
        xs.append(s)
        means.append(v.mean())
        if with_ci:
            lo, hi = bootstrap_mean_ci(v, n_boot=n_boot, seed=seed)
            lows.append(lo)
            highs.append(hi)
    if not xs:
        return None
    return np.asarray(xs, dtype=np.float64), means, lows, highs


def _draw_arm(ax, model: str, sub: pd.DataFrame, series, dodge: float, spacing: float, rng) -> tuple:
    """An arm: mean line with markers, its bootstrap band and every subject as a jittered point."""
    st = _style(model)
    xs, means, lows, highs = series
    x = xs + dodge
    band = ax.fill_between(x, lows, highs, color=st["color"], alpha=0.22, lw=0, zorder=2)
    line = ax.plot(x, means, color=st["color"], ls=st["linestyle"], marker=st["marker"], ms=3.5, lw=1.4, zorder=4)[0]
    px = sub["size"].to_numpy(dtype=np.float64) + dodge
    px = px + rng.uniform(-0.035, 0.035, px.size) * spacing
    ax.scatter(px, sub["value"], s=5, color=st["color"], alpha=0.45, lw=0, zorder=3)
    return band, line


def _draw_reference(ax, model: str, series):
    """A reference or baseline: a plain line through its per-size means (a level line for one size)."""
    st = _style(model)
    xs, means, _, _ = series
    if xs.size == 1:
        return ax.axhline(means[0], color=st["color"], ls=st["linestyle"], lw=1.0, zorder=1)
    return ax.plot(xs, means, color=st["color"], ls=st["linestyle"], lw=1.0, zorder=1)[0]


def _size_axes(ax, sizes: np.ndarray, spacing: float, metric: str) -> None:
    if sizes.size:
        ax.set_xticks(sizes)
        ax.set_xticklabels([f"{s:g}" for s in sizes])
        ax.set_xlim(sizes[0] - 0.35 * spacing, sizes[-1] + 0.35 * spacing)
    else:
        _no_data(ax)
    ax.set_xlabel("number of training volumes")
    ax.set_ylabel(METRIC_LABEL.get(metric, metric))
    ax.grid(axis="y", lw=0.4, color="0.88")
    ax.set_axisbelow(True)


# --------------------------------------------------------------------------- #
# figures 5–6: segmentation per structure
# --------------------------------------------------------------------------- #
_SEGMENTATION_GROUPS: tuple[tuple[str, str], ...] = (
    ("real_ct", MODEL_LABELS["real_ct"]),
    *((arm, f"synthetic CT, {MODEL_LABELS[arm]}") for arm in ARMS),
)


def _segmentation_groups(segmentation: pd.DataFrame, size) -> tuple[dict[str, pd.DataFrame], list[str], float | None]:
    """Rows per group (real CT and each arm at ``size``), structure order and the size used."""
    seg = segmentation.assign(size=pd.to_numeric(segmentation["size"], errors="coerce"))
    synthetic = seg[seg["source"] == "synthetic_ct"]
    if size is None:
        sizes = synthetic["size"].dropna()
        size = float(sizes.max()) if len(sizes) else None
    groups: dict[str, pd.DataFrame] = {"real_ct": seg[seg["source"] == "real_ct"]}
    for model in ARMS:
        groups[model] = synthetic[(synthetic["model"] == model) & (synthetic["size"] == size)]
    structures = list(dict.fromkeys(pd.concat(groups.values())["structure"].dropna().astype(str)))
    if not structures:
        structures = list(dict.fromkeys(seg["structure"].dropna().astype(str)))
    return groups, structures, size


@contextmanager
def _seeded_global_rng(seed: int):
    """Seed NumPy's legacy global generator for a block and restore it afterwards.

    seaborn's strip-plot jitter draws from ``np.random`` and takes no generator, so the
    figure is reproducible only with the global state fixed for the call.
    """
    state = np.random.get_state()  # noqa: NPY002 -- the global state is what seaborn reads
    np.random.seed(seed % 2**32)  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _structure_panel(ax, groups: Mapping[str, pd.DataFrame], structures: Sequence[str], metric: str, seed: int) -> list:
    """Horizontal box + strip plot of ``metric`` per structure (rows) and group (dodged within a row).

    Distributions of per-subject values are seaborn's home ground: it dodges the groups
    and draws boxes (quartiles, median, whiskers at 1.5 × IQR) and jittered points.
    """
    present = [(key, label) for key, label in _SEGMENTATION_GROUPS if key in groups and len(groups[key])]
    rows = [
        pd.DataFrame(
            {
                "structure": groups[key]["structure"].astype(str),
                "group": key,
                "value": _finite_or_nan(groups[key][metric]),
            }
        )
        for key, _ in present
    ]
    long = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["structure", "group", "value"])
    long = long[long["structure"].isin(structures) & np.isfinite(long["value"].astype(np.float64))]
    keys = [key for key, _ in present]
    palette = {key: _style(key)["color"] for key in keys}
    if len(long):
        common = {"data": long, "x": "value", "y": "structure", "hue": "group", "order": list(structures)}
        common |= {"hue_order": keys, "palette": palette, "orient": "h", "dodge": True, "legend": False, "ax": ax}
        with warnings.catch_warnings():  # seaborn 0.13.2 passes matplotlib 3.11 the deprecated ``vert``
            warnings.filterwarnings("ignore", message="vert: bool was deprecated", category=DeprecationWarning)
            sns.boxplot(**common, width=0.81, fill=False, showfliers=False, linewidth=0.7, gap=0.1, zorder=2)
        with _seeded_global_rng(seed):
            sns.stripplot(**common, size=2.0, alpha=0.6, jitter=0.07, linewidth=0, zorder=3)
    handles = [Patch(facecolor="none", edgecolor=_style(key)["color"], lw=0.7, label=label) for key, label in present]
    ax.set_yticks(range(len(structures)))
    ax.set_yticklabels([pretty_structure(s) for s in structures])
    ax.set_ylim(len(structures) - 0.5, -0.5)  # first structure on top
    ax.tick_params(axis="y", length=0)
    ax.set_ylabel("")
    ax.set_xlabel(METRIC_LABEL.get(metric, metric))
    ax.grid(axis="x", lw=0.4, color="0.88")
    for row in range(1, len(structures)):
        ax.axhline(row - 0.5, color="0.93", lw=0.5, zorder=0)
    ax.set_axisbelow(True)
    if metric == "dice":
        ax.set_xlim(right=1.02)
    else:
        ax.set_xlim(left=0)
    if not len(long):
        _no_data(ax)
    return handles


def _group_labels(handles: Sequence[Patch], size) -> list[str]:
    """Legend labels; the synthetic-CT groups name the training-set size."""
    note = "" if size is None else f" ({size:g} training volumes)"
    return [h.get_label() + ("" if h.get_label() == "real CT" else note) for h in handles]


def plot_segmentation_by_structure(
    segmentation: pd.DataFrame,
    metric: str,
    path_stem: str | os.PathLike,
    size: float | None = None,
    seed: int = 0,
    width_in: float = SINGLE_COLUMN_IN,
) -> list[Path]:
    """Box and strip plot of a segmentation metric per structure (figure 5 for Dice).

    One row per structure (prettified, e.g. "gluteus maximus R"), within a row
    one box per group: the real CT (segmented once per fold, independent of
    the training-set size), and the synthetic CT of CycleGAN and of
    CycleGAN + GC at training-set size ``size`` (default: the largest). Boxes
    span the quartiles with the median, whiskers 1.5 × IQR; every test subject
    of every fold is a point (jittered vertically). NaN values (e.g. surface
    distances of an empty mask) are left out; absent groups are skipped.

    Returns the PNG and PDF paths.
    """
    if metric not in segmentation.columns:
        raise KeyError(f"plot_segmentation_by_structure: no column '{metric}' in the table")
    groups, structures, size = _segmentation_groups(segmentation, size)
    with plt.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(width_in, 0.9 + 0.3 * max(1, len(structures))), layout="constrained")
        handles = _structure_panel(ax, groups, structures, metric, seed)
        if handles:
            fig.legend(
                handles=handles,
                labels=_group_labels(handles, size),
                loc="outside upper center",
                ncol=1 if width_in < 5 else len(handles),
            )
        return save_png_pdf(fig, path_stem, dpi=PNG_DPI)


def plot_surface_distances(
    segmentation: pd.DataFrame,
    path_stem: str | os.PathLike,
    size: float | None = None,
    metrics: Sequence[str] = ("assd_mm", "hd95_mm"),
    seed: int = 0,
    width_in: float = DOUBLE_COLUMN_IN,
) -> list[Path]:
    """ASSD and HD95 per structure, side by side (figure 6; groups as in :func:`plot_segmentation_by_structure`).

    Distances in mm; NaN distances (empty predicted or reference masks) are left
    out, and each panel says for how many cases, and how many of them were empty
    predictions (column ``empty_prediction``), so a failed segmentation never
    passes for a small distance. Returns the PNG and PDF paths.
    """
    for metric in metrics:
        if metric not in segmentation.columns:
            raise KeyError(f"plot_surface_distances: no column '{metric}' in the table")
    groups, structures, size = _segmentation_groups(segmentation, size)
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(
            1,
            len(metrics),
            figsize=(width_in, 0.9 + 0.3 * max(1, len(structures))),
            sharey=True,
            layout="constrained",
            squeeze=False,
        )
        handles = []
        for i, (ax, metric) in enumerate(zip(axes[0], metrics)):
            handles = _structure_panel(ax, groups, structures, metric, seed + i) or handles
            ax.text(
                -0.02 if i else -0.3,
                1.0,
                "ab"[i] if i < 2 else "",
                transform=ax.transAxes,
                fontweight="bold",
                ha="right",
                va="bottom",
            )
            shown = pd.concat(list(groups.values())) if groups else segmentation.iloc[:0]
            missing = int((~np.isfinite(pd.to_numeric(shown[metric], errors="coerce"))).sum())
            if missing:
                empty = int(shown["empty_prediction"].sum()) if "empty_prediction" in shown else None
                ax.text(
                    1.0,
                    -0.02,
                    f"not defined for {missing} of {len(shown)} cases"
                    + (f" ({empty} empty predictions)" if empty is not None else ""),
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize="x-small",
                    color="0.3",
                )
            if i:
                ax.tick_params(axis="y", labelleft=False)
        if handles:
            fig.legend(
                handles=handles, labels=_group_labels(handles, size), loc="outside upper center", ncol=len(handles)
            )
        return save_png_pdf(fig, path_stem, dpi=PNG_DPI)


# --------------------------------------------------------------------------- #
# figure 7: training curves
# --------------------------------------------------------------------------- #
_LOSS_PANELS: tuple[tuple[str, str], ...] = (
    ("loss_g", "generator loss (total)"),
    ("loss_d", "discriminator loss"),
    ("cycle", "cycle loss (L1)"),
    ("gc_loss", "GC loss (1 − GC)"),
)


def read_loss_tables(
    paths: Sequence[str | os.PathLike], runs: Sequence[Sequence]
) -> dict[tuple[int, str, int, int], pd.DataFrame]:
    """Read the runs' ``losses.tsv`` files into ``{(size, model, fold, replicate): table}``; ``runs[i]``
    is the ``(size, model, fold, replicate)`` of ``paths[i]`` (as the workflow names them, not guessed
    from the path)."""
    if len(paths) != len(runs):
        raise ValueError(f"{len(paths)} loss table(s) for {len(runs)} run(s)")
    return {
        (int(size), str(model), int(fold), int(replicate)): pd.read_csv(path, sep="\t")
        for path, (size, model, fold, replicate) in zip(paths, runs)
    }


def plot_training_curves(
    loss_tables: Mapping[tuple[int, str, int, int], pd.DataFrame],
    path_stem: str | os.PathLike,
    size: int | None = None,
    models: Sequence[str] = ARMS,
    smooth_fraction: float = 0.02,
    width_in: float = DOUBLE_COLUMN_IN,
) -> list[Path]:
    """Smoothed training losses against step, per model, at one training-set size (figure 7).

    Four panels: (a) total generator loss (adversarial + weighted cycle
    [+ weighted GC]), (b) discriminator loss (LSGAN, both domains), (c) cycle
    loss (unweighted L1, both directions), (d) GC loss ``1 − GC`` averaged over
    both directions (logged for CycleGAN too, where it is not optimised).
    Each run (fold and seed) is a thin line, the mean over runs (per step) a thick line, in
    the model's colour. Curves are smoothed by a centred moving average over
    ``smooth_fraction`` of the run's steps (at least one step). ``size``
    defaults to the largest size among the given models' runs.

    Parameters
    ----------
    loss_tables:
        ``{(size, model, fold, replicate): table}`` with columns ``step`` and the loss
        columns of ``losses.tsv`` (see :func:`read_loss_tables`).
    path_stem:
        Output path without suffix.

    Returns the PNG and PDF paths.
    """
    runs = {k: v for k, v in loss_tables.items() if k[1] in models}
    if size is None and runs:
        size = max(k[0] for k in runs)
    runs = {k: v for k, v in runs.items() if k[0] == size}
    with plt.rc_context(_RC):
        fig, axes = plt.subplots(2, 2, figsize=(width_in, 0.62 * width_in), layout="constrained", sharex=True)
        max_step = 1.0
        for letter, ax, (column, ylabel) in zip("abcd", axes.ravel(), _LOSS_PANELS):
            drawn = False
            for model in _ordered(k[1] for k in runs):
                colour = _style(model)["color"]
                smoothed = []
                for key, table in sorted(runs.items(), key=lambda kv: kv[0][2:]):
                    if key[1] != model or column not in table or "step" not in table:
                        continue
                    t = table[["step", column]].apply(pd.to_numeric, errors="coerce").dropna().sort_values("step")
                    if t.empty:
                        continue
                    window = max(1, int(round(smooth_fraction * len(t))))
                    y = pd.Series(smooth(t[column], window), index=t.index)
                    ax.plot(t["step"], y, color=colour, lw=0.5, alpha=0.45, zorder=2)
                    smoothed.append(pd.Series(y.to_numpy(), index=t["step"].to_numpy()))
                    max_step = max(max_step, float(t["step"].max()))
                    drawn = True
                if smoothed:
                    mean = pd.concat(smoothed, axis=1).mean(axis=1).sort_index()
                    ax.plot(mean.index, mean.to_numpy(), color=colour, lw=1.4, zorder=3)
            ax.set_ylabel(ylabel)
            ax.grid(lw=0.4, color="0.9")
            ax.set_axisbelow(True)
            ax.text(-0.16, 1.0, letter, transform=ax.transAxes, fontweight="bold", ha="left", va="bottom")
            if not drawn:
                _no_data(ax)
        for ax in axes[1]:
            ax.set_xlabel("training step")
            ax.xaxis.set_major_formatter(_step_formatter(max_step))
        handles = [
            Line2D([], [], color=_style(m)["color"], lw=1.4, label=_style(m)["label"])
            for m in _ordered(k[1] for k in runs)
        ]
        handles += [
            Line2D([], [], color="0.3", lw=0.5, alpha=0.6, label="single run"),
            Line2D([], [], color="0.3", lw=1.4, label="mean of runs"),
        ]
        title = f"runs with {size:g} training volumes" if size is not None else None
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), title=title, title_fontsize=7)
        return save_png_pdf(fig, path_stem, dpi=PNG_DPI)


def render_all(
    synthesis: pd.DataFrame | None,
    segmentation: pd.DataFrame | None,
    loss_tables: Mapping[tuple[int, str, int, int], pd.DataFrame] | None,
    out_dir: str | os.PathLike,
    seed: int = 0,
) -> list[Path]:
    """Every figure of this module into ``out_dir`` under :data:`FIGURE_STEMS`.

    Figures of an input given as None are skipped; an empty ``loss_tables``
    still gives a (blank, "no data") training-curve figure.
    """
    out = Path(out_dir)
    written: list[Path] = []
    if synthesis is not None:
        for metric in ("mae", "psnr", "ssim", "mae_boundary"):
            written += plot_metric_vs_size(synthesis, metric, out / FIGURE_STEMS[metric], seed=seed)
    if segmentation is not None:
        written += plot_segmentation_by_structure(segmentation, "dice", out / FIGURE_STEMS["dice"], seed=seed)
        written += plot_surface_distances(segmentation, out / FIGURE_STEMS["surface_distances"], seed=seed)
    if loss_tables is not None:
        written += plot_training_curves(loss_tables, out / FIGURE_STEMS["training_curves"])
    return written


def qualitative_job(
    files: SubjectInputs, label_table, synthetic_dirs: Mapping[str, str | os.PathLike], out_stem
) -> list[Path]:
    """Figure 4: one test subject (``mr``, ``ct``, ``mask``, labels), real and synthetic CT of each model
    on the hip-joint slice."""
    ct = read_volume(files.ct)
    labels = read_volume(files.labels, dtype=np.uint8).data if files.labels else None
    table = label_names(label_table) or {}
    femur_ids = [i for i, n in table.items() if n.lower().startswith("femur")] or [2, 3]
    synthetic = {
        MODEL_LABELS.get(m, m): read_volume(Path(d) / f"{files.subject}.nii.gz").data for m, d in synthetic_dirs.items()
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
