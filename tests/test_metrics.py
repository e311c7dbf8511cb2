"""Tests for mr2ct.evaluation.metrics.

Image metrics are checked against direct NumPy / scikit-image computations
written here; surface metrics against MedPy 0.5.2 on hypothesis-generated
masks; mae_boundary against a brute-force band.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from mr2ct.evaluation import metrics

SHAPE = (12, 16, 16)

# --------------------------------------------------------------------------- #
# strategies
# --------------------------------------------------------------------------- #
spacing_st = st.tuples(*[st.floats(min_value=0.3, max_value=4.0, allow_nan=False, allow_infinity=False)] * 3)


@st.composite
def box_mask(draw: st.DrawFn, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """One axis-aligned box, possibly touching the volume border."""
    m = np.zeros(shape, dtype=bool)
    sl = []
    for n in shape:
        lo = draw(st.integers(0, n - 1))
        hi = draw(st.integers(lo + 1, n))
        sl.append(slice(lo, hi))
    m[tuple(sl)] = True
    return m


@st.composite
def blob_mask(draw: st.DrawFn, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Thresholded smoothed noise: irregular, possibly multi-component blobs."""
    seed = draw(st.integers(0, 2**32 - 1))
    sigma = draw(st.floats(0.0, 2.5))
    quantile = draw(st.floats(0.3, 0.995))
    noise = np.random.default_rng(seed).standard_normal(shape)
    if sigma > 0:
        noise = ndimage.gaussian_filter(noise, sigma)
    return noise > np.quantile(noise, quantile)


@st.composite
def mask_st(draw: st.DrawFn, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    kind = draw(st.sampled_from(["box", "blob", "union"]))
    if kind == "box":
        return draw(box_mask(shape))
    if kind == "blob":
        return draw(blob_mask(shape))
    return draw(box_mask(shape)) | draw(blob_mask(shape))


@st.composite
def ct_pair(draw: st.DrawFn, shape: tuple[int, ...] = SHAPE):
    """Random CT-like volumes exceeding the clipping range, plus a body mask."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ref = rng.uniform(-1500.0, 3500.0, shape)
    noise = draw(st.sampled_from([0.0, 5.0, 200.0, 2000.0]))
    pred = ref + rng.normal(0.0, noise, shape) if noise else ref.copy()
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int16]))
    mask = draw(mask_st(shape))
    return ref.astype(dtype), pred.astype(dtype), mask


# --------------------------------------------------------------------------- #
# image metrics vs. direct computations
# --------------------------------------------------------------------------- #
@settings(max_examples=40, deadline=None)
@given(ct_pair())
def test_mae_matches_direct(pair) -> None:
    ref, pred, mask = pair
    r = ref.astype(np.float64)
    p = pred.astype(np.float64)
    expected = np.sum(np.abs(r - p) * mask) / np.sum(mask)
    assert metrics.mae(ref, pred, mask) == pytest.approx(expected, rel=1e-12, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(ct_pair())
def test_psnr_matches_direct(pair) -> None:
    from skimage.metrics import peak_signal_noise_ratio

    ref, pred, mask = pair
    r = np.clip(ref.astype(np.float64), -1024, 3000)[mask]
    p = np.clip(pred.astype(np.float64), -1024, 3000)[mask]
    mse = np.mean((r - p) ** 2)
    got = metrics.psnr(ref, pred, mask)
    if mse == 0:
        assert got == math.inf
        return
    expected = 10 * np.log10(4024.0**2 / mse)
    assert got == pytest.approx(expected, rel=1e-12)
    # SynthRAD2023 computes it with skimage on the masked voxels.
    assert got == pytest.approx(peak_signal_noise_ratio(r, p, data_range=4024.0), rel=1e-12)


def test_psnr_identical_is_inf_without_warning() -> None:
    ref = np.full(SHAPE, 40.0)
    pred = ref.copy()
    pred[0, 0, 0] = 5000.0  # outside the mask: ignored
    mask = np.zeros(SHAPE, bool)
    mask[2:8, 2:8, 2:8] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.psnr(ref, pred, mask) == math.inf
    # clipping: 3500 vs 4000 HU both clip to 3000 -> identical
    assert metrics.psnr(np.full(SHAPE, 3500.0), np.full(SHAPE, 4000.0), mask) == math.inf


def _ssim_synthrad_reference(ref: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    """SynthRAD2023 SSIM, step by step with skimage (independent of the module)."""
    from skimage.metrics import structural_similarity

    gt = np.clip(ref.astype(np.float64), -1024.0, 3000.0)
    pr = np.clip(pred.astype(np.float64), -1024.0, 3000.0)
    gt = np.where(mask, gt, -1024.0)
    pr = np.where(mask, pr, -1024.0)
    gt = gt + 1024.0
    pr = pr + 1024.0
    _, smap = structural_similarity(gt, pr, data_range=4024.0, full=True)
    cropped_map = smap[3:-3, 3:-3, 3:-3]
    cropped_mask = mask[3:-3, 3:-3, 3:-3]
    if not cropped_mask.any():
        return math.nan
    return float(cropped_map[cropped_mask].mean(dtype=np.float64))


@settings(max_examples=15, deadline=None)
@given(ct_pair())
def test_ssim_matches_synthrad_recipe(pair) -> None:
    ref, pred, mask = pair
    expected = _ssim_synthrad_reference(ref, pred, mask)
    got = metrics.ssim(ref, pred, mask)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert got <= 1.0 + 1e-12


def test_ssim_identical_is_one() -> None:
    rng = np.random.default_rng(0)
    ref = rng.uniform(-1000, 2000, SHAPE)
    mask = np.ones(SHAPE, bool)
    assert metrics.ssim(ref, ref.copy(), mask) == pytest.approx(1.0)


def test_ssim_anisotropic_shape_crop() -> None:
    # non-cubic shape: the crop must be applied per axis
    rng = np.random.default_rng(1)
    shape = (9, 14, 11)
    ref = rng.uniform(-1100, 3100, shape)
    pred = ref + rng.normal(0, 100, shape)
    mask = np.zeros(shape, bool)
    mask[1:8, 2:13, 3:10] = True
    assert metrics.ssim(ref, pred, mask) == pytest.approx(_ssim_synthrad_reference(ref, pred, mask), rel=1e-12)


def test_ssim_of_a_volume_thinner_than_the_border_crop_is_nan() -> None:
    """3 voxels are cropped from every border: 6 voxels along an axis leave nothing (NaN), 7 one."""
    rng = np.random.default_rng(2)
    for thin, finite in ((6, False), (7, True)):
        shape = (thin, 12, 12)
        ref = rng.uniform(-1000, 1000, shape)
        pred = ref + rng.normal(0, 50, shape)
        value = metrics.ssim(ref, pred, np.ones(shape, bool))
        assert math.isfinite(value) == finite, thin
        if finite:
            assert value == pytest.approx(_ssim_synthrad_reference(ref, pred, np.ones(shape, bool)), rel=1e-12)


def test_surface_distance_errors_name_the_problem() -> None:
    mask = np.ones(SHAPE, bool)
    with pytest.raises(ValueError, match=r"^a must be an array"):
        metrics.surface_distances(True, mask, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"^b must be an array"):
        metrics.surface_distances(mask, True, (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"same shape, got \(12, 16, 16\) and \(11, 16, 16\)"):
        metrics.surface_distances(mask, mask[:-1], (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"connectivity must be in \[1, 3\], got 4"):
        metrics.surface_distances(mask, mask, (1.0, 1.0, 1.0), connectivity=4)
    empty = metrics.surface_distances(np.zeros(SHAPE, bool), mask, (1.0, 1.0, 1.0))
    assert empty.empty and empty.a_to_b.shape == empty.b_to_a.shape == (0,)


def test_image_metrics_empty_mask_nan_without_warning() -> None:
    ref = np.zeros(SHAPE)
    pred = np.ones(SHAPE)
    empty = np.zeros(SHAPE, bool)
    border_only = np.zeros(SHAPE, bool)
    border_only[0] = True  # empty after the 3-voxel SSIM crop
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(metrics.mae(ref, pred, empty))
        assert math.isnan(metrics.psnr(ref, pred, empty))
        assert math.isnan(metrics.ssim(ref, pred, empty))
        assert math.isnan(metrics.ssim(ref, pred, border_only))
        assert math.isnan(metrics.mae_boundary(ref, pred, empty, (1.0, 1.0, 1.0)))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        metrics.mae(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), np.ones((4, 4, 4), bool))


# --------------------------------------------------------------------------- #
# mae_boundary
# --------------------------------------------------------------------------- #
def _brute_force_band(bone: np.ndarray, spacing, band_mm: float) -> np.ndarray:
    """For each voxel: min distance (mm) to any voxel of the other class <= band_mm.

    All-pairs distances; the same 1e-9 relative tolerance as the module.
    """
    idx = np.indices(bone.shape).reshape(bone.ndim, -1).T
    flat = bone.ravel()
    sp = np.asarray(spacing, dtype=np.float64)
    band = np.zeros(flat.shape, bool)
    if flat.all() or not flat.any():
        return band.reshape(bone.shape)
    delta = (idx[:, None, :] - idx[None, :, :]) * sp  # index differences, then mm
    dist = np.sqrt((delta**2).sum(axis=-1))
    other_class = flat[:, None] != flat[None, :]
    nearest = np.where(other_class, dist, np.inf).min(axis=1)
    band = nearest <= band_mm * (1 + 1e-9)
    return band.reshape(bone.shape)


TINY = (5, 7, 6)


@settings(max_examples=80, deadline=None)
@given(
    bone=mask_st(TINY),
    body=mask_st(TINY),
    spacing=spacing_st,
    band_mm=st.floats(0.0, 5.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_mae_boundary_matches_brute_force(bone, body, spacing, band_mm, seed) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.uniform(-1000, 2000, TINY)
    pred = rng.uniform(-1000, 2000, TINY)
    band = _brute_force_band(bone, spacing, band_mm)
    np.testing.assert_array_equal(metrics.bone_boundary_band(bone, spacing, band_mm), band)
    sel = band & body
    got = metrics.mae_boundary(ref, pred, body, spacing, bone=bone, band_mm=band_mm)
    if not sel.any():
        assert math.isnan(got)
    else:
        assert got == pytest.approx(np.abs(ref - pred)[sel].mean(), rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    bone=mask_st((10, 24, 20)),
    spacing=spacing_st,
    band_mm=st.floats(0.0, 6.0),
)
def test_bone_boundary_band_crop_is_exact(bone, spacing, band_mm) -> None:
    # Larger volume than the brute-force test so that the bounding-box crop
    # inside bone_boundary_band is actually smaller than the array.
    if bone.all() or not bone.any():
        expected = np.zeros(bone.shape, bool)
    else:
        d_in = ndimage.distance_transform_edt(bone, sampling=spacing)
        d_out = ndimage.distance_transform_edt(~bone, sampling=spacing)
        expected = np.where(bone, d_in, d_out) <= band_mm * (1 + 1e-9)
    np.testing.assert_array_equal(metrics.bone_boundary_band(bone, spacing, band_mm), expected)


def test_mae_boundary_threshold_default() -> None:
    rng = np.random.default_rng(3)
    ref = rng.uniform(-200, 150, TINY)
    ref[1:4, 2:5, 2:4] = 900.0
    pred = ref + rng.normal(0, 50, TINY)
    body = np.ones(TINY, bool)
    sp = (2.0, 0.8, 1.1)
    bone = ref > 200.0
    band = _brute_force_band(bone, sp, 2.0)
    assert metrics.mae_boundary(ref, pred, body, sp) == pytest.approx(np.abs(ref - pred)[band].mean(), rel=1e-12)
    # a different threshold selects no bone -> empty band -> NaN
    assert math.isnan(metrics.mae_boundary(ref, pred, body, sp, bone_threshold_hu=1000.0))


def test_mae_boundary_spacing_aware() -> None:
    shape = (5, 21, 21)
    bone = np.zeros(shape, bool)
    bone[:, 8:13, 8:13] = True  # bone column through all slices: in-plane surface only
    ref = np.zeros(shape)
    pred = np.zeros(shape)
    # error of 100 HU two voxels outside the bone in-plane (x = 6)
    pred[:, 10, 6] = 100.0
    body = np.ones(shape, bool)
    band_1 = metrics.bone_boundary_band(bone, (3.0, 1.0, 1.0), 2.0)
    band_2 = metrics.bone_boundary_band(bone, (3.0, 2.0, 2.0), 2.0)
    # doubling the in-plane spacing shrinks the band (strict subset)
    assert band_2.sum() < band_1.sum()
    assert not (band_2 & ~band_1).any()
    assert band_1[2, 10, 6] and not band_2[2, 10, 6]
    # the error 2 mm from the surface counts at 1 mm spacing, not at 2 mm (4 mm away)
    assert metrics.mae_boundary(ref, pred, body, (3.0, 1.0, 1.0), bone=bone) > 0
    assert metrics.mae_boundary(ref, pred, body, (3.0, 2.0, 2.0), bone=bone) == 0.0


def test_bone_boundary_band_no_surface() -> None:
    assert not metrics.bone_boundary_band(np.zeros(TINY, bool), (1, 1, 1), 2.0).any()
    assert not metrics.bone_boundary_band(np.ones(TINY, bool), (1, 1, 1), 2.0).any()


# --------------------------------------------------------------------------- #
# dice
# --------------------------------------------------------------------------- #
@settings(max_examples=40, deadline=None)
@given(mask_st(), mask_st())
def test_dice_matches_direct(a, b) -> None:
    expected = 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())
    assert metrics.dice(a, b) == pytest.approx(expected, rel=1e-12)


def test_dice_empty_conventions() -> None:
    empty = np.zeros(SHAPE, bool)
    full = np.ones(SHAPE, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(metrics.dice(empty, empty))
        assert metrics.dice(empty, full) == 0.0
        assert metrics.dice(full, empty) == 0.0
        assert metrics.dice(full, full) == 1.0


# --------------------------------------------------------------------------- #
# surface metrics vs. MedPy
# --------------------------------------------------------------------------- #
@settings(max_examples=150, deadline=None)
@given(a=mask_st(), b=mask_st(), spacing=spacing_st)
def test_surface_metrics_match_medpy(a, b, spacing) -> None:
    mb = pytest.importorskip("medpy.metric.binary")
    sd = metrics.surface_distances(a, b, spacing)
    assert sd.assd == pytest.approx(mb.assd(a, b, voxelspacing=spacing, connectivity=1), abs=1e-6)
    assert sd.hd95 == pytest.approx(mb.hd95(a, b, voxelspacing=spacing, connectivity=1), abs=1e-6)
    assert sd.hd == pytest.approx(mb.hd(a, b, voxelspacing=spacing, connectivity=1), abs=1e-6)
    assert metrics.assd(a, b, spacing) == sd.assd
    assert metrics.hd95(a, b, spacing) == sd.hd95
    # directed mean distances are MedPy's asd in each direction
    assert sd.a_to_b.mean() == pytest.approx(mb.asd(a, b, voxelspacing=spacing), abs=1e-6)
    assert sd.b_to_a.mean() == pytest.approx(mb.asd(b, a, voxelspacing=spacing), abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(a=mask_st(), b=mask_st(), spacing=spacing_st, connectivity=st.sampled_from([2, 3]))
def test_surface_metrics_match_medpy_higher_connectivity(a, b, spacing, connectivity) -> None:
    mb = pytest.importorskip("medpy.metric.binary")
    sd = metrics.surface_distances(a, b, spacing, connectivity=connectivity)
    kw = dict(voxelspacing=spacing, connectivity=connectivity)
    assert sd.assd == pytest.approx(mb.assd(a, b, **kw), abs=1e-6)
    assert sd.hd95 == pytest.approx(mb.hd95(a, b, **kw), abs=1e-6)


def test_surface_distances_single_voxel_and_border_touching() -> None:
    mb = pytest.importorskip("medpy.metric.binary")
    a = np.zeros(SHAPE, bool)
    a[0, 0, 0] = True
    b = np.zeros(SHAPE, bool)
    b[-1, -3:, :] = True
    sp = (2.5, 0.7, 1.3)
    assert metrics.assd(a, b, sp) == pytest.approx(mb.assd(a, b, voxelspacing=sp), abs=1e-6)
    assert metrics.hd95(a, b, sp) == pytest.approx(mb.hd95(a, b, voxelspacing=sp), abs=1e-6)
    full = np.ones(SHAPE, bool)
    assert metrics.hd95(full, b, sp) == pytest.approx(mb.hd95(full, b, voxelspacing=sp), abs=1e-6)


def test_surface_distances_identical_masks_zero() -> None:
    a = np.zeros(SHAPE, bool)
    a[3:9, 4:12, 2:10] = True
    sd = metrics.surface_distances(a, a, (2.0, 1.0, 1.0))
    assert sd.assd == 0.0 and sd.hd95 == 0.0 and sd.hd == 0.0


def test_directed_variants() -> None:
    sd = metrics.SurfaceDistances(np.array([0.0, 1.0, 2.0, 3.0]), np.array([10.0]))
    assert sd.assd == pytest.approx(16.0 / 5)
    assert sd.assd_mean_of_directed == pytest.approx((1.5 + 10.0) / 2)
    assert sd.hd95_max_directed == pytest.approx(10.0)
    assert sd.hd95 == pytest.approx(np.percentile([0, 1, 2, 3, 10], 95))
    assert sd.hd == 10.0


@pytest.mark.parametrize("which", ["a", "b", "both"])
def test_surface_metrics_empty_nan_without_warning(which: str) -> None:
    full = np.zeros(SHAPE, bool)
    full[2:6, 2:6, 2:6] = True
    empty = np.zeros(SHAPE, bool)
    a = empty if which in ("a", "both") else full
    b = empty if which in ("b", "both") else full
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sd = metrics.surface_distances(a, b, (1.0, 1.0, 1.0))
        assert sd.empty
        for value in (sd.assd, sd.hd95, sd.hd, sd.assd_mean_of_directed, sd.hd95_max_directed):
            assert math.isnan(value)
        assert math.isnan(metrics.assd(a, b, (1.0, 1.0, 1.0)))
        assert math.isnan(metrics.hd95(a, b, (1.0, 1.0, 1.0)))


def test_spacing_validation() -> None:
    a = np.ones((3, 3, 3), bool)
    with pytest.raises(ValueError):
        metrics.assd(a, a, (1.0, 1.0))
    with pytest.raises(ValueError):
        metrics.hd95(a, a, (1.0, 0.0, 1.0))


def test_segmentation_scores() -> None:
    mb = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(7)
    ref = np.zeros(SHAPE, np.int16)
    ref[2:6, 3:9, 3:9] = 1
    ref[6:10, 8:14, 5:12] = 2
    pred = ref.copy()
    pred[rng.random(SHAPE) < 0.05] = 0
    pred[4:7, 2:5, 2:5] = 2
    sp = (2.5, 0.9, 0.9)
    rows = metrics.segmentation_scores(pred, ref, sp, [1, 2, 3])
    assert [r["label"] for r in rows] == [1, 2, 3]
    for row in rows[:2]:
        p, r = pred == row["label"], ref == row["label"]
        assert row["dice"] == pytest.approx(metrics.dice(p, r))
        assert row["assd_mm"] == pytest.approx(mb.assd(p, r, voxelspacing=sp), abs=1e-6)
        assert row["hd95_mm"] == pytest.approx(mb.hd95(p, r, voxelspacing=sp), abs=1e-6)
        assert row["n_pred"] == np.count_nonzero(p) and row["n_ref"] == np.count_nonzero(r)
    absent = rows[2]
    assert absent["n_pred"] == absent["n_ref"] == 0
    assert math.isnan(absent["dice"]) and math.isnan(absent["assd_mm"])
    assert math.isnan(absent["hd95_mm"])
    # the connectivity reaches the surface extraction (medpy's oracle with the same connectivity)
    for connectivity in (1, 3):
        rows = metrics.segmentation_scores(pred, ref, sp, [2], connectivity=connectivity)
        p, r = pred == 2, ref == 2
        oracle = mb.assd(p, r, voxelspacing=sp, connectivity=connectivity)
        assert rows[0]["assd_mm"] == pytest.approx(oracle, abs=1e-6), connectivity
    with pytest.raises(ValueError, match="same shape"):
        metrics.segmentation_scores(pred, ref[:-1], sp, [1])


def test_dice_errors_name_the_argument() -> None:
    mask = np.ones(SHAPE, bool)
    with pytest.raises(ValueError, match=r"^a must be an array"):
        metrics.dice(True, mask)
    with pytest.raises(ValueError, match=r"^b must be an array"):
        metrics.dice(mask, True)
    with pytest.raises(ValueError, match=r"same shape, got \(12, 16, 16\) and \(11, 16, 16\)"):
        metrics.dice(mask, mask[:-1])
