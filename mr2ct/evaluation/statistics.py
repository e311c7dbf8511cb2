"""Paired comparisons and summary tables of the experiment metrics.

The two experiments of Hiasa et al. (2018) compare CycleGAN with and without
the gradient-consistency (GC) loss on the *same* test subjects: every fold
trains both arms on the same training set and scores them on the same
held-out subjects. The comparison is therefore paired on ``(fold, subject)``
(and, for segmentation, per structure); with seeds as replicates
(``splits.replicates``) on ``(fold, subject, replicate)``, replicate *r* of one
arm against replicate *r* of the other, and the spread of the effect between
seeds is reported next to it (``n_replicates``, ``seed_sd_difference``: the
standard deviation over replicates of each replicate's mean difference):

* :func:`paired_comparison` -- per group (e.g. training-set size): mean of
  each arm, median and mean of the paired difference ``a − b``, a percentile
  bootstrap 95 % confidence interval of the mean difference (pairs resampled
  with replacement, seeded), the two-sided Wilcoxon signed-rank p-value and
  which arm is better given the metric's direction (:data:`METRIC_DIRECTION`);
* :func:`statistics_table` -- all synthesis metrics (MAE, PSNR, SSIM,
  boundary MAE) and sizes, GC vs. no GC;
* :func:`segmentation_statistics` -- Dice and ASSD per size and structure,
  GC vs. no GC, plus each arm's synthetic CT against the real CT
  (:func:`compare_to_real_ct`);
* :func:`summary_table` -- mean and standard deviation per group (rendered as
  Markdown by :func:`mr2ct.report.tables.to_markdown`).

Units follow the input tables: MAE and boundary MAE in HU, PSNR in dB, SSIM
and Dice unitless, ASSD and HD95 in mm. Differences carry the metric's unit.

Rows whose metric is not finite (NaN: e.g. a surface distance of an empty
mask; ±inf: e.g. the PSNR of an exact prediction) and rows without a partner
in the other arm are left out of a pair-wise comparison; the number of rows
left out is reported in ``n_dropped`` and explained in ``note``.

The Wilcoxon test uses SciPy's default (``zero_method="wilcox"``: zero
differences are discarded; exact null distribution for small samples without
ties, normal approximation otherwise). ``wilcoxon_p_holm`` is the
Holm–Bonferroni adjustment over the rows of one metric and one comparison
in a table (e.g. MAE over all sizes).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from mr2ct.settings import ARMS, MODEL_ORDER

__all__ = [
    "COMPARISON_COLUMNS",
    "METRIC_DIRECTION",
    "N_BOOT",
    "SEGMENTATION_METRICS",
    "SYNTHESIS_METRICS",
    "better_model",
    "bootstrap_mean_ci",
    "seed_bootstrap_ci",
    "compare_to_real_ct",
    "holm_adjust",
    "metric_direction",
    "paired_comparison",
    "pairing_keys",
    "segmentation_statistics",
    "statistics_table",
    "summary_table",
]

#: ``"lower"`` or ``"higher"``: which values of a metric are better.
METRIC_DIRECTION: dict[str, str] = {
    "mae": "lower",
    "mae_boundary": "lower",
    "psnr": "higher",
    "ssim": "higher",
    "dice": "higher",
    "assd": "lower",
    "assd_mm": "lower",
    "hd95": "lower",
    "hd95_mm": "lower",
}

SYNTHESIS_METRICS: tuple[str, ...] = ("mae", "psnr", "ssim", "mae_boundary")
SEGMENTATION_METRICS: tuple[str, ...] = ("dice", "assd_mm", "hd95_mm")
#: Bootstrap resamples of every confidence interval (tables, figures, findings).
N_BOOT = 10000


#: Columns of :func:`paired_comparison` after the grouping columns.
COMPARISON_COLUMNS: tuple[str, ...] = (
    "metric",
    "a",
    "b",
    "n_pairs",
    "n_dropped",
    "mean_a",
    "mean_b",
    "median_difference",
    "mean_difference",
    "ci_low",
    "ci_high",
    "n_replicates",
    "seed_sd_difference",
    "seed_ci_low",
    "seed_ci_high",
    "wilcoxon_p",
    "better",
    "note",
)

#: Column of a table holding the seed index of a trained model's run (``splits.replicates``).
REPLICATE = "replicate"

_BOOT_CHUNK_ELEMENTS = 2_000_000  # bootstrap index matrix elements per chunk (bounds memory)


# --------------------------------------------------------------------------- #
# building blocks
# --------------------------------------------------------------------------- #
def metric_direction(metric: str) -> str:
    """``"lower"`` or ``"higher"`` (better) for a metric name of :data:`METRIC_DIRECTION`.

    Raises
    ------
    KeyError
        For a metric whose direction is not known (the message lists the known ones).
    """
    try:
        return METRIC_DIRECTION[metric]
    except KeyError:
        raise KeyError(
            f"unknown metric '{metric}': its direction is not known; "
            f"known metrics: {', '.join(sorted(METRIC_DIRECTION))}"
        ) from None


def better_model(metric: str, difference: float, a: str, b: str) -> str:
    """Name of the better model given the difference ``a − b`` of a metric.

    Returns ``a`` or ``b`` by the sign of ``difference`` and the metric's
    direction, ``"tie"`` for a zero difference and ``""`` for NaN.
    """
    direction = metric_direction(metric)
    if difference is None or not np.isfinite(difference):
        return ""
    if difference == 0:
        return "tie"
    a_higher = difference > 0
    return a if a_higher == (direction == "higher") else b


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean.

    ``n_boot`` resamples of ``len(values)`` draws with replacement from a
    ``numpy.random.default_rng(seed)`` generator; the interval is the
    ``(1 − level)/2`` and ``(1 + level)/2`` quantiles of the resampled means
    (linear interpolation). Constant samples give exactly ``(v, v)``; fewer
    than two values give ``(nan, nan)``. Values must be finite.

    Parameters
    ----------
    values:
        The sample (any unit; the interval has the same unit).
    n_boot:
        Number of bootstrap resamples (≥ 1).
    seed:
        Seed of the generator; the same seed and values give the same interval.
    level:
        Coverage of the interval, in (0, 1).
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_mean_ci needs finite values; drop NaN/inf first")
    n = x.size
    if n < 2:
        return (math.nan, math.nan)
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    chunk = max(1, _BOOT_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # the resampled means cannot leave [min, max]; guard against rounding
    return (float(max(low, x.min())), float(min(high, x.max())))


def seed_bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    seeds: Sequence | np.ndarray,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Two-level (cluster) percentile bootstrap interval of the mean of ``values`` grouped by ``seeds``.

    Each resample draws as many seeds as there are, with replacement, and within each drawn
    seed as many values as it has, with replacement; its statistic is the mean of the drawn
    values. The interval therefore holds the spread between trainings (seeds) as well as
    between subjects: a paired difference of trained models whose interval excludes zero is
    larger than what another seed alone would give (Davison & Hinkley 1997, *Bootstrap
    methods and their application*, sec. 3.8, resampling both stages). With two seeds it
    excludes zero only when both seeds' differences lie clearly on one side. Fewer than two
    seeds give ``(nan, nan)``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    labels = np.asarray(seeds).ravel()
    if x.size != labels.size:
        raise ValueError(f"seed_bootstrap_ci: {x.size} values but {labels.size} seed labels")
    if not np.all(np.isfinite(x)):
        raise ValueError("seed_bootstrap_ci needs finite values; drop NaN/inf first")
    groups = [x[labels == s] for s in pd.unique(labels)]
    k = len(groups)
    if k < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, k, size=(n_boot, k))
    totals = np.zeros(n_boot)
    counts = np.zeros(n_boot)
    for slot in range(k):
        for g, group in enumerate(groups):
            chosen = picks[:, slot] == g
            if not chosen.any():
                continue
            draws = rng.integers(0, group.size, size=(int(chosen.sum()), group.size))
            totals[chosen] += group[draws].sum(axis=1)
            counts[chosen] += group.size
    means = totals / counts
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(low), float(high))


def _wilcoxon(differences: np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of paired differences, with a note when undefined."""
    n = differences.size
    if n < 2:
        return math.nan, f"Wilcoxon test undefined: {n} pair{'s' if n != 1 else ''}"
    if np.all(differences == 0):
        return math.nan, "Wilcoxon test undefined: all differences are zero"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.wilcoxon(differences, alternative="two-sided")
    return float(result.pvalue), ""


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN entries stay NaN and are not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = valid.size
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adjusted
    return out


def _as_tuple(columns: str | Iterable[str]) -> tuple[str, ...]:
    return (columns,) if isinstance(columns, str) else tuple(columns)


def _tidy_sizes(frame: pd.DataFrame) -> pd.DataFrame:
    """Show a float ``size`` column of whole numbers (NaN-padded tables) as integers."""
    if "size" in frame and pd.api.types.is_float_dtype(frame["size"]):
        s = frame["size"]
        finite = s.dropna()
        if len(finite) and np.all(finite == np.round(finite)):
            frame = frame.assign(size=s.astype("Int64"))
    return frame


def _require(table: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise KeyError(f"{what}: missing column(s) {missing}; the table has {list(table.columns)}")


# --------------------------------------------------------------------------- #
# paired comparison
# --------------------------------------------------------------------------- #
def paired_comparison(
    table: pd.DataFrame,
    metric: str,
    a: str = ARMS[1],
    b: str = ARMS[0],
    by: str | Sequence[str] = ("size",),
    pair_on: str | Sequence[str] = ("fold", "subject"),
    n_boot: int = N_BOOT,
    seed: int = 0,
    model_column: str = "model",
) -> pd.DataFrame:
    """Compare model ``a`` with model ``b`` on paired observations, per group.

    Rows of ``table`` with ``model_column`` equal to ``a`` or ``b`` are split
    into groups by ``by`` and, within a group, matched on ``pair_on``. The
    difference is always ``a − b`` in the metric's unit.

    Parameters
    ----------
    table:
        Long table with columns ``by``, ``pair_on``, ``model_column`` and ``metric``.
    metric:
        Column to compare; must be a key of :data:`METRIC_DIRECTION`.
    a, b:
        The two models (values of ``model_column``).
    by:
        Grouping columns; one output row per group (``()`` for one group).
    pair_on:
        Columns identifying a pair (e.g. ``("fold", "subject")``). A key that
        occurs twice for the same model is an error.
    n_boot:
        Bootstrap resamples of the pairs for the confidence interval.
    seed:
        Seed of the bootstrap; each group uses ``default_rng(seed)`` afresh,
        so a group's interval does not depend on the other groups present.
    model_column:
        Column holding the model names.

    Returns
    -------
    pandas.DataFrame
        One row per group: the ``by`` columns, then :data:`COMPARISON_COLUMNS`:
        ``metric, a, b, n_pairs, n_dropped`` (rows of ``a``/``b`` in the group
        not used: a non-finite metric, or no partner with a finite metric,
        so a NaN row costs its partner too), ``mean_a, mean_b`` (over
        the pairs), ``median_difference, mean_difference`` (``a − b``),
        ``ci_low, ci_high`` (percentile bootstrap 95 % CI of the mean
        difference), ``n_replicates`` and ``seed_sd_difference`` (when
        ``pair_on`` holds ``replicate``: the number of replicates paired and
        the sample standard deviation over them of the per-replicate mean
        difference, NaN for fewer than two), ``seed_ci_low, seed_ci_high`` (the
        two-level bootstrap 95 % interval of :func:`seed_bootstrap_ci`, which
        resamples seeds and then pairs: NaN for fewer than two replicates),
        ``wilcoxon_p`` (two-sided; NaN when fewer than two pairs or all
        differences are zero), ``better`` (``a``, ``b``, ``"tie"`` or
        ``""`` by the sign of the mean difference and the metric's direction)
        and ``note`` (why something is NaN or rows were dropped).
    """
    by = _as_tuple(by)
    pair_on = _as_tuple(pair_on)
    metric_direction(metric)  # fail early on an unknown metric
    if a == b:
        raise ValueError(f"compare two different models, got a = b = '{a}'")
    _require(table, (*by, *pair_on, model_column, metric), "paired_comparison")

    sub = table.loc[table[model_column].isin([a, b]), [*by, *pair_on, model_column, metric]].copy()
    sub[metric] = pd.to_numeric(sub[metric], errors="coerce")
    duplicated = sub.duplicated([*by, *pair_on, model_column], keep=False)
    if duplicated.any():
        example = sub.loc[duplicated].iloc[0]
        key = ", ".join(f"{c}={example[c]!r}" for c in (*by, *pair_on, model_column))
        raise ValueError(f"paired_comparison: more than one row for {key}; pair_on {pair_on} must identify a pair")

    groups = [((), sub)] if not by else list(sub.groupby(list(by), sort=True, dropna=False))
    rows = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row.update(_compare_group(group, metric, a, b, pair_on, model_column, n_boot, seed))
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*by, *COMPARISON_COLUMNS])
    return _tidy_sizes(out)


def _compare_group(group, metric, a, b, pair_on, model_column, n_boot, seed) -> dict:
    """Comparison statistics of one group (see :func:`paired_comparison`)."""
    finite = np.isfinite(group[metric].to_numpy(dtype=np.float64))
    n_nonfinite = int((~finite).sum())
    usable = group.loc[finite]
    wide = usable.pivot(index=list(pair_on), columns=model_column, values=metric)
    for m in (a, b):
        if m not in wide.columns:
            wide[m] = np.nan
    paired = wide[[a, b]].dropna()
    n_pairs = len(paired)
    n_unpaired = len(usable) - 2 * n_pairs
    notes = []
    if n_nonfinite:
        notes.append(f"{n_nonfinite} row{'s' if n_nonfinite != 1 else ''} with non-finite {metric} dropped")
    if n_unpaired:
        notes.append(f"{n_unpaired} unpaired row{'s' if n_unpaired != 1 else ''} dropped")

    va = paired[a].to_numpy(dtype=np.float64)
    vb = paired[b].to_numpy(dtype=np.float64)
    d = va - vb
    if n_pairs:
        mean_a, mean_b = float(va.mean()), float(vb.mean())
        mean_d = float(d[0]) if np.all(d == d[0]) else float(d.mean())
        median_d = float(np.median(d))
    else:
        mean_a = mean_b = mean_d = median_d = math.nan
        notes.append("no pairs")
    ci_low, ci_high = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed) if n_pairs else (math.nan, math.nan)
    if n_pairs == 1:
        notes.append("CI undefined: 1 pair")
    p, p_note = _wilcoxon(d)
    if p_note and n_pairs:
        notes.append(p_note)
    n_replicates, seed_sd = _between_seed_spread(paired, d, pair_on)
    seed_ci = (math.nan, math.nan)
    if n_replicates > 1:
        seed_ci = seed_bootstrap_ci(d, paired.index.get_level_values(REPLICATE), n_boot=n_boot, seed=seed)
    return {
        "metric": metric,
        "a": a,
        "b": b,
        "n_pairs": n_pairs,
        "n_dropped": n_nonfinite + n_unpaired,
        "mean_a": mean_a,
        "mean_b": mean_b,
        "median_difference": median_d,
        "mean_difference": mean_d,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "n_replicates": n_replicates,
        "seed_sd_difference": seed_sd,
        "seed_ci_low": seed_ci[0],
        "seed_ci_high": seed_ci[1],
        "wilcoxon_p": p,
        "better": better_model(metric, mean_d, a, b),
        "note": "; ".join(notes),
    }


def _between_seed_spread(paired: pd.DataFrame, d: np.ndarray, pair_on: tuple[str, ...]) -> tuple[int, float]:
    """Replicates among the pairs and the sd (ddof 1) of their per-replicate mean differences."""
    if REPLICATE not in pair_on or not len(d):
        return (1 if len(d) else 0), math.nan
    per_seed = pd.Series(d, index=paired.index.get_level_values(REPLICATE))
    means = per_seed.groupby(level=0).mean().to_numpy()
    return len(means), float(np.std(means, ddof=1)) if len(means) > 1 else math.nan


def pairing_keys(table: pd.DataFrame) -> tuple[str, ...]:
    """What identifies a pair of runs' scores: ``(fold, subject)``, plus ``replicate`` when the table has it."""
    return ("fold", "subject", REPLICATE) if REPLICATE in table.columns else ("fold", "subject")


def _with_holm(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``wilcoxon_p_holm``: Holm adjustment within each (metric, a, b) family."""
    frame = frame.copy()
    frame["wilcoxon_p_holm"] = np.nan
    for _, idx in frame.groupby(["metric", "a", "b"], sort=False).groups.items():
        frame.loc[idx, "wilcoxon_p_holm"] = holm_adjust(frame.loc[idx, "wilcoxon_p"].to_numpy())
    cols = list(frame.columns)
    cols.insert(cols.index("wilcoxon_p") + 1, cols.pop(cols.index("wilcoxon_p_holm")))
    return frame[cols]


def statistics_table(
    synthesis: pd.DataFrame,
    metrics: Sequence[str] = SYNTHESIS_METRICS,
    seed: int = 0,
    a: str = ARMS[1],
    b: str = ARMS[0],
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """GC vs. no GC on every synthesis metric and training-set size.

    :func:`paired_comparison` of ``a`` against ``b`` for each metric, grouped
    by ``size`` and paired on :func:`pairing_keys`, stacked metric by metric
    (in the order given) and by increasing size, plus ``wilcoxon_p_holm``
    (Holm adjustment over the sizes of one metric).
    """
    keys = pairing_keys(synthesis)
    parts = [
        paired_comparison(synthesis, m, a=a, b=b, by=("size",), pair_on=keys, n_boot=n_boot, seed=seed) for m in metrics
    ]
    if not parts:
        raise ValueError("statistics_table needs at least one metric")
    return _with_holm(pd.concat(parts, ignore_index=True))


def compare_to_real_ct(
    segmentation: pd.DataFrame,
    metric: str = "dice",
    models: Sequence[str] = ARMS,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> pd.DataFrame:
    """Segmentation of each model's synthetic CT against that of the real CT.

    The real CT is segmented once per fold (rows with ``source == "real_ct"``,
    empty ``size``); its rows are repeated for every training-set size (and
    replicate) so that each ``(size, structure)`` group pairs the synthetic-CT
    score (``a`` = the model) with the real-CT score (``b = "real_ct"``) of the
    same fold and subject. A negative Dice difference is the loss from using synthetic CT.
    """
    _require(segmentation, ("size", "model", "fold", "subject", "source", "structure", metric), "compare_to_real_ct")
    synthetic = segmentation[segmentation["source"] == "synthetic_ct"]
    real = segmentation[segmentation["source"] == "real_ct"].assign(model="real_ct")
    sizes = sorted(pd.to_numeric(synthetic["size"], errors="coerce").dropna().unique())
    if real.empty or not sizes:
        return pd.DataFrame(columns=["size", "structure", *COMPARISON_COLUMNS])
    keys = pairing_keys(segmentation)
    replicates = sorted(synthetic[REPLICATE].unique()) if REPLICATE in keys else [None]
    real_by_size = pd.concat(
        [real.assign(size=s, **({REPLICATE: r} if r is not None else {})) for s in sizes for r in replicates],
        ignore_index=True,
    )
    combined = pd.concat([synthetic, real_by_size], ignore_index=True)
    combined["size"] = pd.to_numeric(combined["size"])
    parts = [
        paired_comparison(
            combined, metric, a=m, b="real_ct", by=("size", "structure"), pair_on=keys, n_boot=n_boot, seed=seed
        )
        for m in models
        if (synthetic["model"] == m).any()
    ]
    if not parts:
        return pd.DataFrame(columns=["size", "structure", *COMPARISON_COLUMNS])
    return pd.concat(parts, ignore_index=True)


def segmentation_statistics(
    segmentation: pd.DataFrame,
    metrics: Sequence[str] = SEGMENTATION_METRICS,
    seed: int = 0,
    a: str = ARMS[1],
    b: str = ARMS[0],
    n_boot: int = N_BOOT,
    real_ct_metric: str | None = "dice",
) -> pd.DataFrame:
    """Segmentation comparisons per training-set size and structure.

    1. ``a`` vs. ``b`` (synthetic CT of GC vs. no GC) on each of ``metrics``,
       grouped by ``(size, structure)``, paired on :func:`pairing_keys`;
    2. when ``real_ct_metric`` is given, each of ``a`` and ``b`` against the
       real CT on that metric (:func:`compare_to_real_ct`).

    Returns the stacked rows (``size, structure`` then
    :data:`COMPARISON_COLUMNS`, plus ``wilcoxon_p_holm``, Holm-adjusted over
    the sizes and structures of one metric and comparison).
    """
    synthetic = segmentation[segmentation["source"] == "synthetic_ct"].copy()
    synthetic["size"] = pd.to_numeric(synthetic["size"], errors="coerce")
    keys = pairing_keys(synthetic)
    parts = [
        paired_comparison(synthetic, m, a=a, b=b, by=("size", "structure"), pair_on=keys, n_boot=n_boot, seed=seed)
        for m in metrics
    ]
    if real_ct_metric is not None:
        parts.append(compare_to_real_ct(segmentation, real_ct_metric, models=(b, a), n_boot=n_boot, seed=seed))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["size", "structure", *COMPARISON_COLUMNS, "wilcoxon_p_holm"])
    return _tidy_sizes(_with_holm(pd.concat(parts, ignore_index=True)))


# --------------------------------------------------------------------------- #
# summaries
# --------------------------------------------------------------------------- #
def _model_sort_key(values: pd.Series) -> pd.Series:
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return values.map(lambda v: rank.get(v, len(rank)))


def summary_table(
    table: pd.DataFrame,
    metrics: Sequence[str] = SYNTHESIS_METRICS,
    by: str | Sequence[str] = ("size", "model"),
    counts: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof 1) of each metric per group.

    Columns: the ``by`` columns, ``n`` (rows in the group), then for each
    metric ``<metric>_mean``, ``<metric>_sd`` and ``<metric>_n`` (finite
    values used; NaN and ±inf are ignored), then ``<column>_sum`` for each
    column of ``counts`` (e.g. the number of empty predictions, the reason
    surface distances are missing). Groups are sorted by the ``by``
    columns, models in :data:`MODEL_ORDER`. Rows with an empty grouping value
    (e.g. the real-CT segmentation's ``size``) form their own group.
    """
    by = _as_tuple(by)
    metrics = tuple(metrics)
    counts = tuple(counts)
    _require(table, (*by, *metrics, *counts), "summary_table")
    values = table[list(metrics)].apply(pd.to_numeric, errors="coerce")
    values = values.where(np.isfinite(values))
    work = pd.concat([table[list(by)], values, table[list(counts)].apply(pd.to_numeric, errors="coerce")], axis=1)
    rows = []
    groups = [((), work)] if not by else work.groupby(list(by), sort=False, dropna=False)
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n"] = len(group)
        for m in metrics:
            v = group[m].dropna().to_numpy(dtype=np.float64)
            row[f"{m}_mean"] = float(v.mean()) if v.size else math.nan
            row[f"{m}_sd"] = float(v.std(ddof=1)) if v.size > 1 else math.nan
            row[f"{m}_n"] = int(v.size)
        for c in counts:
            row[f"{c}_sum"] = int(group[c].fillna(0).sum())
        rows.append(row)
    cols = [*by, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "sd", "n")), *(f"{c}_sum" for c in counts)]
    out = pd.DataFrame(rows, columns=cols)
    if by:
        out = out.sort_values(
            list(by), key=lambda s: _model_sort_key(s) if s.name in ("model", "source") else s, na_position="first"
        ).reset_index(drop=True)
    return _tidy_sizes(out)
