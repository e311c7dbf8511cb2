"""Tests for mr2ct.evaluation.statistics on constructed cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from mr2ct.evaluation import statistics as S


def paired_table(a_values, b_values, metric="mae", size=4, a="cyclegan_gc", b="cyclegan") -> pd.DataFrame:
    """Long table with one row per subject and model (fold 0)."""
    rows = []
    for i, (va, vb) in enumerate(zip(a_values, b_values)):
        rows.append({"size": size, "model": a, "fold": 0, "subject": f"s{i:02d}", metric: va})
        rows.append({"size": size, "model": b, "fold": 0, "subject": f"s{i:02d}", metric: vb})
    return pd.DataFrame(rows)


def synthesis_table(seed: int = 0, sizes=(2, 4, 6), folds=2, subjects=3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for size in sizes:
        for model in ("cyclegan", "cyclegan_gc", "reference_supervised", "baseline_constant"):
            for fold in range(folds):
                for s in range(subjects):
                    rows.append(
                        {
                            "size": size,
                            "model": model,
                            "fold": fold,
                            "subject": f"f{fold}s{s}",
                            "mae": rng.normal(100, 10),
                            "psnr": rng.normal(28, 1),
                            "ssim": rng.uniform(0.6, 0.9),
                            "mae_boundary": rng.normal(200, 20),
                        }
                    )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- #
# paired_comparison
# --------------------------------------------------------------------------- #
def test_identical_samples_give_zero_difference_and_undefined_test():
    values = [80.0, 95.5, 101.25, 120.0, 87.0]
    out = S.paired_comparison(paired_table(values, values), "mae", n_boot=500)
    assert len(out) == 1
    row = out.iloc[0]
    assert row["n_pairs"] == 5 and row["n_dropped"] == 0
    assert row["median_difference"] == 0.0 and row["mean_difference"] == 0.0
    assert row["ci_low"] <= 0.0 <= row["ci_high"]
    assert math.isnan(row["wilcoxon_p"]) or row["wilcoxon_p"] == 1.0
    assert "zero" in row["note"]
    assert row["better"] == "tie"
    assert row["mean_a"] == row["mean_b"] == pytest.approx(np.mean(values))


@pytest.mark.parametrize("shift", [1.25, -3.5, 0.125])
def test_constant_shift_is_recovered_exactly(shift):
    b = np.arange(10, dtype=float) * 4.25 + 60.0  # dyadic values: a − b is exact in binary
    a = b + shift
    row = S.paired_comparison(paired_table(a, b), "mae", n_boot=1000).iloc[0]
    assert row["mean_difference"] == shift
    assert row["median_difference"] == shift
    assert (row["ci_low"], row["ci_high"]) == (shift, shift)
    # all ten differences share a sign: the exact two-sided p-value is 2 / 2**10
    assert row["wilcoxon_p"] == pytest.approx(2.0 / 2**10)
    assert row["better"] == ("cyclegan" if shift > 0 else "cyclegan_gc")  # lower MAE is better


def test_wilcoxon_p_matches_hand_computation_and_scipy():
    # differences a − b = [1, 2, −3, 4, 5]: ranks 1..5, W− = 3 = min(W+, W−).
    # Subsets of {1..5} with rank sum <= 3: {}, {1}, {2}, {3}, {1,2} -> 5 of 32;
    # exact two-sided p = 2 * 5/32 = 0.3125.
    b = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    d = np.array([1.0, 2.0, -3.0, 4.0, 5.0])
    row = S.paired_comparison(paired_table(b + d, b, metric="psnr"), "psnr", n_boot=200).iloc[0]
    assert row["wilcoxon_p"] == pytest.approx(0.3125, abs=1e-12)
    assert row["wilcoxon_p"] == pytest.approx(stats.wilcoxon(d).pvalue, abs=1e-12)
    assert row["mean_difference"] == pytest.approx(1.8)
    assert row["median_difference"] == 2.0
    assert row["better"] == "cyclegan_gc"  # higher PSNR is better


def test_bootstrap_is_deterministic_for_a_seed():
    table = synthesis_table(seed=3)
    first = S.paired_comparison(table, "mae", n_boot=2000, seed=11)
    second = S.paired_comparison(table, "mae", n_boot=2000, seed=11)
    pd.testing.assert_frame_equal(first, second)
    other = S.paired_comparison(table, "mae", n_boot=2000, seed=12)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    # the CI brackets the mean difference
    assert np.all(first["ci_low"] <= first["mean_difference"])
    assert np.all(first["mean_difference"] <= first["ci_high"])


def test_bootstrap_ci_is_close_to_normal_theory():
    x = np.random.default_rng(5).normal(3.0, 2.0, 400)
    low, high = S.bootstrap_mean_ci(x, n_boot=4000, seed=1)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, abs=0.05)
    assert high == pytest.approx(x.mean() + half, abs=0.05)
    assert all(math.isnan(v) for v in S.bootstrap_mean_ci([2.0], n_boot=10))
    with pytest.raises(ValueError, match="finite"):
        S.bootstrap_mean_ci([1.0, math.nan])


def test_unpaired_and_non_finite_rows_are_dropped_and_counted():
    table = synthesis_table(seed=1)
    missing = (table["size"] == 2) & (table["model"] == "cyclegan") & (table["subject"] == "f1s2")
    table = table[~missing].copy()
    nan_row = (table["size"] == 4) & (table["model"] == "cyclegan_gc") & (table["subject"] == "f0s0")
    table.loc[nan_row, "mae"] = np.nan
    out = S.paired_comparison(table, "mae", n_boot=300).set_index("size")
    assert out.loc[2, "n_pairs"] == 5 and out.loc[2, "n_dropped"] == 1
    assert "1 unpaired row dropped" in out.loc[2, "note"]
    # a NaN row is dropped, and with it its partner, which is left unpaired
    assert out.loc[4, "n_pairs"] == 5 and out.loc[4, "n_dropped"] == 2
    assert out.loc[4, "note"] == "1 row with non-finite mae dropped; 1 unpaired row dropped"
    assert out.loc[6, "n_pairs"] == 6 and out.loc[6, "n_dropped"] == 0 and out.loc[6, "note"] == ""
    # the remaining pairs give the same answer as a table holding only them
    keep = table[(table["size"] == 2) & (table["subject"] != "f1s2")]
    clean = S.paired_comparison(keep, "mae", n_boot=300).iloc[0]
    assert clean["mean_difference"] == pytest.approx(out.loc[2, "mean_difference"])


def test_too_few_pairs_give_nan_with_a_note():
    row = S.paired_comparison(paired_table([1.0], [2.0]), "mae", n_boot=100).iloc[0]
    assert row["n_pairs"] == 1
    assert math.isnan(row["wilcoxon_p"]) and math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert "1 pair" in row["note"]
    assert row["mean_difference"] == -1.0 and row["better"] == "cyclegan_gc"
    none = S.paired_comparison(paired_table([1.0], [math.nan]), "mae", n_boot=100).iloc[0]
    assert none["n_pairs"] == 0 and math.isnan(none["mean_difference"]) and none["better"] == ""
    assert "no pairs" in none["note"]


def test_duplicate_pairs_and_unknown_metrics_are_refused():
    table = paired_table([1.0, 2.0], [1.5, 2.5])
    with pytest.raises(ValueError, match="more than one row"):
        S.paired_comparison(pd.concat([table, table.iloc[:1]]), "mae")
    with pytest.raises(KeyError, match="unknown metric"):
        S.paired_comparison(table.rename(columns={"mae": "foo"}), "foo")
    with pytest.raises(KeyError, match="missing column"):
        S.paired_comparison(table, "psnr")


@pytest.mark.parametrize(
    ("metric", "difference", "expected"),
    [
        ("mae", -1.0, "a"),
        ("mae", 1.0, "b"),
        ("mae_boundary", -0.5, "a"),
        ("assd_mm", 2.0, "b"),
        ("hd95_mm", -2.0, "a"),
        ("psnr", 1.0, "a"),
        ("psnr", -1.0, "b"),
        ("ssim", 0.01, "a"),
        ("dice", -0.1, "b"),
        ("dice", 0.0, "tie"),
        ("mae", math.nan, ""),
    ],
)
def test_direction_logic(metric, difference, expected):
    assert S.better_model(metric, difference, "a", "b") == expected


def test_metric_directions():
    for m in ("mae", "mae_boundary", "assd_mm", "hd95_mm", "assd", "hd95"):
        assert S.metric_direction(m) == "lower"
    for m in ("psnr", "ssim", "dice"):
        assert S.metric_direction(m) == "higher"


def test_holm_adjustment():
    out = S.holm_adjust([0.01, 0.04, math.nan, 0.03])
    np.testing.assert_allclose(out[[0, 1, 3]], [0.03, 0.06, 0.06])
    assert math.isnan(out[2])


# --------------------------------------------------------------------------- #
# tables
# --------------------------------------------------------------------------- #
def test_statistics_table_covers_every_metric_and_size():
    out = S.statistics_table(synthesis_table(), seed=0, n_boot=300)
    assert len(out) == 4 * 3
    assert list(out.columns[:2]) == ["size", "metric"]
    for column in (
        "n_pairs",
        "mean_a",
        "mean_b",
        "median_difference",
        "mean_difference",
        "ci_low",
        "ci_high",
        "wilcoxon_p",
        "wilcoxon_p_holm",
        "better",
    ):
        assert column in out.columns
    assert list(out["metric"].unique()) == list(S.SYNTHESIS_METRICS)
    assert sorted(out["size"].unique()) == [2, 4, 6]
    assert (out["n_pairs"] == 6).all()
    assert (out["wilcoxon_p_holm"] >= out["wilcoxon_p"] - 1e-15).all()


def replicated(table: pd.DataFrame, shifts: dict[int, float], arm: str = "cyclegan_gc") -> pd.DataFrame:
    """``table`` once per replicate r of ``shifts`` (``arm`` moved by ``shifts[r]`` in every metric
    column); deterministic rows (no trained model) once, as replicate 0, like the workflow's tables."""
    trained = table["model"].isin(("cyclegan", "cyclegan_gc", "reference_supervised"))
    parts = [table[~trained].assign(replicate=0)]
    for r, shift in shifts.items():
        part = table[trained].assign(replicate=r)
        moved = part["model"] == arm
        for metric in ("mae", "psnr", "ssim", "mae_boundary", "dice", "assd_mm"):
            if metric in part:
                part.loc[moved, metric] += shift
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_replicates_are_paired_by_index_and_their_spread_is_reported():
    table = synthesis_table(sizes=(2,))
    single = S.statistics_table(table, metrics=("mae",), seed=0, n_boot=200).iloc[0]
    assert single["n_replicates"] == 1 and np.isnan(single["seed_sd_difference"])
    shifts = {0: 0.0, 1: -3.0, 2: -9.0}
    out = S.statistics_table(replicated(table, shifts), metrics=("mae",), seed=0, n_boot=200).iloc[0]
    assert out["n_pairs"] == 3 * single["n_pairs"] and out["n_replicates"] == 3
    assert out["mean_difference"] == pytest.approx(single["mean_difference"] - 4.0)
    assert out["seed_sd_difference"] == pytest.approx(np.std([0.0, -3.0, -9.0], ddof=1))
    # without the replicate in the pairing key the same table is refused, not silently averaged
    with pytest.raises(ValueError, match="must identify a pair"):
        S.paired_comparison(replicated(table, shifts), "mae")


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 4), st.integers(0, 2**31 - 1))
def test_between_seed_spread_matches_a_merge_of_the_two_arms(replicates, seed):
    """Against an independent computation: merge the arms on (fold, subject, replicate), the mean
    difference per replicate, its sample sd over replicates."""
    rng = np.random.default_rng(seed)
    table = replicated(synthesis_table(seed=seed, sizes=(4,)), {r: 0.0 for r in range(replicates)})
    table["mae"] = rng.normal(100, 15, len(table))
    out = S.statistics_table(table, metrics=("mae",), n_boot=50).iloc[0]
    keys = ["fold", "subject", "replicate"]
    a = table[table["model"] == "cyclegan_gc"].set_index(keys)["mae"]
    b = table[table["model"] == "cyclegan"].set_index(keys)["mae"]
    d = (a - b).dropna()
    per_seed = d.groupby(level="replicate").mean()
    assert out["n_pairs"] == len(d) and out["n_replicates"] == replicates
    assert out["mean_difference"] == pytest.approx(d.mean(), rel=1e-12)
    assert out["seed_sd_difference"] == pytest.approx(per_seed.std(ddof=1), rel=1e-9)


def test_real_ct_segmented_once_pairs_with_every_replicate():
    table = segmentation_table()
    synthetic = table["source"] == "synthetic_ct"
    table = pd.concat(
        [table[~synthetic].assign(replicate=0), *(table[synthetic].assign(replicate=r) for r in (0, 1))],
        ignore_index=True,
    )
    out = S.segmentation_statistics(table, seed=0, n_boot=100)
    real = out[out["b"] == "real_ct"]
    assert len(real) == 2 * 2 * 2 and (real["n_pairs"] == 12).all() and (real["n_replicates"] == 2).all()
    assert (real["seed_sd_difference"] == 0).all()  # the replicates' scores are identical here


def segmentation_table() -> pd.DataFrame:
    """Real CT Dice = 0.875 everywhere; synthetic Dice 0.75 (no GC) and 0.8125 (GC); one NaN ASSD."""
    rows = []
    for fold in range(2):
        for s in range(3):
            subject = f"f{fold}s{s}"
            for structure in ("pelvis", "femur_left"):
                rows.append(
                    {
                        "size": np.nan,
                        "model": "real_ct",
                        "fold": fold,
                        "subject": subject,
                        "source": "real_ct",
                        "structure": structure,
                        "dice": 0.875,
                        "assd_mm": 1.0,
                        "hd95_mm": 3.0,
                    }
                )
                for size in (2, 4):
                    for model, dice, assd in (("cyclegan", 0.75, 2.0), ("cyclegan_gc", 0.8125, 1.5)):
                        rows.append(
                            {
                                "size": size,
                                "model": model,
                                "fold": fold,
                                "subject": subject,
                                "source": "synthetic_ct",
                                "structure": structure,
                                "dice": dice,
                                "assd_mm": assd,
                                "hd95_mm": 2 * assd,
                            }
                        )
    table = pd.DataFrame(rows)
    table.loc[(table["model"] == "cyclegan") & (table["subject"] == "f0s0"), "assd_mm"] = np.nan
    return table


def test_segmentation_statistics_compare_arms_and_real_ct():
    out = S.segmentation_statistics(segmentation_table(), seed=0, n_boot=200)
    arms = out[(out["a"] == "cyclegan_gc") & (out["b"] == "cyclegan")]
    assert set(arms["metric"]) == {"dice", "assd_mm", "hd95_mm"}  # every metric of the segmentation summary
    assert len(arms) == 3 * 2 * 2  # metrics x sizes x structures
    dice = arms[arms["metric"] == "dice"]
    assert (dice["mean_difference"] == 0.0625).all() and (dice["better"] == "cyclegan_gc").all()
    assd = arms[arms["metric"] == "assd_mm"]
    assert (assd["n_pairs"] == 5).all() and (assd["n_dropped"] == 2).all()  # the NaN row and its partner
    assert (assd["mean_difference"] == -0.5).all() and (assd["better"] == "cyclegan_gc").all()

    real = out[out["b"] == "real_ct"]
    assert set(real["a"]) == {"cyclegan", "cyclegan_gc"}
    assert len(real) == 2 * 2 * 2  # models x sizes x structures
    assert (real["n_pairs"] == 6).all()
    expected = real["a"].map({"cyclegan": -0.125, "cyclegan_gc": -0.0625})
    assert (real["mean_difference"] == expected).all()
    assert (real["better"] == "real_ct").all()
    assert out["size"].dtype.name == "Int64"


def test_summary_table_means_and_sds():
    table = pd.DataFrame(
        {
            "size": [2, 2, 2, 2, 2, 4],
            "model": ["cyclegan_gc", "cyclegan_gc", "cyclegan", "cyclegan", "cyclegan", "cyclegan"],
            "mae": [10.0, 14.0, 1.0, 2.0, np.nan, 5.0],
            "psnr": [30.0, 32.0, 20.0, 22.0, 24.0, np.inf],
        }
    )
    out = S.summary_table(table, metrics=("mae", "psnr"))
    assert list(out["model"]) == ["cyclegan", "cyclegan_gc", "cyclegan"]  # sizes, then MODEL_ORDER
    first = out.iloc[0]
    assert first["n"] == 3 and first["mae_n"] == 2
    assert first["mae_mean"] == 1.5 and first["mae_sd"] == pytest.approx(math.sqrt(0.5))
    assert first["psnr_mean"] == 22.0 and first["psnr_sd"] == 2.0
    gc = out.iloc[1]
    assert gc["mae_mean"] == 12.0 and gc["mae_sd"] == pytest.approx(math.sqrt(8.0))
    last = out.iloc[2]
    assert last["mae_mean"] == 5.0 and math.isnan(last["mae_sd"])
    assert math.isnan(last["psnr_mean"]) and last["psnr_n"] == 0
