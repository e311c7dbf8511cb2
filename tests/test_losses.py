"""Tests for mr2ct.models.losses, checked against an independent NumPy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mr2ct.models.losses import (
    cycle_loss,
    gradient_consistency,
    gradient_consistency_loss,
    identity_loss,
    image_gradients,
    lsgan_loss,
    mind_descriptor,
    mind_loss,
)

SETTINGS = settings(
    deadline=None,
    max_examples=50,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EPS = 1e-8


# ---------------------------------------------------------------------------
# Independent NumPy reference (float64, explicit loops over the batch)
# ---------------------------------------------------------------------------
def np_gradients(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of a 2D image with edge (replicate) padding."""
    p = np.pad(img, 1, mode="edge")
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) / 2.0  # along width
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) / 2.0  # along height
    return gx, gy


def np_ncc(p: np.ndarray, q: np.ndarray, eps: float = EPS) -> float:
    p = p.ravel() - p.mean()
    q = q.ravel() - q.mean()
    return float(np.sum(p * q) / np.sqrt(max(np.sum(p * p) * np.sum(q * q), eps)))


def np_gc(a: np.ndarray, b: np.ndarray, absolute: bool = True, eps: float = EPS) -> float:
    """Batch mean of per-image GC for arrays (N, 1, H, W)."""
    values = []
    for i in range(a.shape[0]):
        ax, ay = np_gradients(a[i, 0].astype(np.float64))
        bx, by = np_gradients(b[i, 0].astype(np.float64))
        if absolute:
            ax, ay, bx, by = np.abs(ax), np.abs(ay), np.abs(bx), np.abs(by)
        gc = 0.5 * (np_ncc(ax, bx, eps) + np_ncc(ay, by, eps))
        values.append(min(1.0, max(-1.0, gc)))
    return float(np.mean(values))


def np_min_ncc_denominator(a: np.ndarray, b: np.ndarray, absolute: bool) -> float:
    """The smallest product sum(p²)·sum(q²) of centred gradient fields over images and directions:
    below ``EPS`` GC clamps it (documented), so GC is exact, and invariant, only above."""
    products = []
    for i in range(a.shape[0]):
        for ga, gb in zip(np_gradients(a[i, 0]), np_gradients(b[i, 0])):
            if absolute:
                ga, gb = np.abs(ga), np.abs(gb)
            products.append(np.sum((ga - ga.mean()) ** 2) * np.sum((gb - gb.mean()) ** 2))
    return float(min(products))


def np_nondegenerate(a: np.ndarray, tol: float = 1e-6) -> bool:
    """Every image has non-constant |grad_x|, |grad_y|, grad_x and grad_y fields."""
    for i in range(a.shape[0]):
        for g in np_gradients(a[i, 0].astype(np.float64)):
            if np.var(np.abs(g)) < tol or np.var(g) < tol:
                return False
    return True


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------
@st.composite
def raw_batches(draw, max_n: int = 3, min_side: int = 8, max_side: int = 16):
    """Arbitrary arrays (N, 1, H, W) from hypothesis, degenerate ones included."""
    n = draw(st.integers(1, max_n))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    return draw(
        hnp.arrays(
            np.float64,
            (n, 1, h, w),
            elements=st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False),
        )
    )


def _structured(rng: np.random.Generator, kind: str, shape: tuple[int, ...]) -> np.ndarray:
    n, c, h, w = shape
    if kind == "noise":
        return rng.standard_normal(shape)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    out = np.zeros(shape)
    for i in range(n):
        if kind == "blobs":
            img = np.zeros((h, w))
            for _ in range(3):
                cy, cx = rng.uniform(0, h), rng.uniform(0, w)
                s = rng.uniform(1.5, 4.0)
                img += rng.uniform(-2, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
            img += 0.05 * rng.standard_normal((h, w))
        else:  # "blocks": piecewise-constant "tissue" regions plus noise
            img = np.zeros((h, w))
            for _ in range(3):
                y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
                img[y0 : y0 + rng.integers(2, h), x0 : x0 + rng.integers(2, w)] += rng.uniform(-1, 1)
            img += 0.05 * rng.standard_normal((h, w))
        out[i, 0] = img
    return out


@st.composite
def image_batches(draw, max_n: int = 3, min_side: int = 8, max_side: int = 24):
    """Non-degenerate image batches (N, 1, H, W) of several kinds."""
    n = draw(st.integers(1, max_n))
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "blobs", "blocks"]))
    a = _structured(np.random.default_rng(seed), kind, (n, 1, h, w))
    assume(np_nondegenerate(a))
    return a


@st.composite
def image_pairs(draw):
    a = draw(image_batches())
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["noise", "blobs", "blocks"]))
    b = _structured(np.random.default_rng(seed), kind, a.shape)
    assume(np_nondegenerate(b))
    return a, b


def t64(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))


# ---------------------------------------------------------------------------
# Agreement with the NumPy reference
# ---------------------------------------------------------------------------
def test_image_gradients_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 9, 13))
    gx, gy = image_gradients(t64(x))
    for i in range(2):
        rx, ry = np_gradients(x[i, 0])
        np.testing.assert_allclose(gx[i, 0].numpy(), rx, atol=1e-12)
        np.testing.assert_allclose(gy[i, 0].numpy(), ry, atol=1e-12)


@SETTINGS
@given(a=raw_batches(), b_seed=st.integers(0, 2**32 - 1), absolute=st.booleans())
def test_gc_matches_numpy_on_arbitrary_arrays(a, b_seed, absolute):
    b = np.random.default_rng(b_seed).uniform(-1, 1, a.shape)
    got = gradient_consistency(t64(a), t64(b), absolute=absolute).item()
    assert np.isfinite(got)
    assert got == pytest.approx(np_gc(a, b, absolute), abs=1e-5)


@SETTINGS
@given(pair=image_pairs(), absolute=st.booleans())
def test_gc_matches_numpy_float32(pair, absolute):
    a, b = pair
    got = gradient_consistency(
        torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32)), absolute=absolute
    )
    assert got.dtype == torch.float32
    ref = np_gc(a.astype(np.float32), b.astype(np.float32), absolute)
    assert got.item() == pytest.approx(ref, abs=2e-5)


@SETTINGS
@given(pair=image_pairs(), absolute=st.booleans())
def test_gc_per_image_values(pair, absolute):
    a, b = pair
    per = gradient_consistency(t64(a), t64(b), absolute=absolute, reduction="none")
    assert per.shape == (a.shape[0],)
    for i in range(a.shape[0]):
        assert per[i].item() == pytest.approx(np_gc(a[i : i + 1], b[i : i + 1], absolute), abs=1e-5)
    mean = gradient_consistency(t64(a), t64(b), absolute=absolute)
    assert mean.item() == pytest.approx(per.mean().item(), abs=1e-12)


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------
@SETTINGS
@given(a=image_batches(), absolute=st.booleans())
def test_gc_self_is_one(a, absolute):
    x = t64(a)
    assert gradient_consistency(x, x, absolute=absolute).item() == pytest.approx(1.0, abs=1e-6)
    x32 = x.float()
    assert gradient_consistency(x32, x32, absolute=absolute).item() == pytest.approx(1.0, abs=1e-5)


@SETTINGS
@given(a=image_batches())
def test_gc_negation(a):
    x = t64(a)
    assert gradient_consistency(x, -x, absolute=True).item() == pytest.approx(1.0, abs=1e-6)
    assert gradient_consistency(x, -x, absolute=False).item() == pytest.approx(-1.0, abs=1e-6)


@SETTINGS
@given(
    pair=image_pairs(),
    log_scale=st.floats(-2.0, 2.0),
    negative=st.booleans(),
    offset=st.floats(-10.0, 10.0),
    absolute=st.booleans(),
)
def test_gc_affine_invariance(pair, log_scale, negative, offset, absolute):
    a, b = pair
    s = 10.0**log_scale
    if negative and absolute:
        s = -s  # negative scales are only invariant for |gradient|
    ref = gradient_consistency(t64(a), t64(b), absolute=absolute).item()
    variants = ((s * a + offset, b), (a, s * b + offset), (s * a + offset, s * b - offset))
    # invariance holds where GC is exact: every NCC denominator above the clamp (100 × EPS)
    assume(all(np_min_ncc_denominator(a2, b2, absolute) > 100 * EPS for a2, b2 in variants))
    for a2, b2 in variants:
        got = gradient_consistency(t64(a2), t64(b2), absolute=absolute).item()
        assert got == pytest.approx(ref, abs=1e-6)


@SETTINGS
@given(pair=image_pairs(), absolute=st.booleans())
def test_gc_symmetric_and_bounded(pair, absolute):
    a, b = pair
    ab = gradient_consistency(t64(a), t64(b), absolute=absolute, reduction="none")
    ba = gradient_consistency(t64(b), t64(a), absolute=absolute, reduction="none")
    torch.testing.assert_close(ab, ba, atol=1e-12, rtol=0)
    assert torch.all(ab >= -1.0) and torch.all(ab <= 1.0)


@SETTINGS
@given(a=raw_batches(), b=raw_batches(), absolute=st.booleans())
def test_gc_bounded_on_arbitrary_arrays(a, b, absolute):
    n = min(a.shape[0], b.shape[0])
    h = min(a.shape[2], b.shape[2])
    w = min(a.shape[3], b.shape[3])
    a, b = a[:n, :, :h, :w], b[:n, :, :h, :w]
    for dtype in (torch.float32, torch.float64):
        gc = gradient_consistency(t64(a).to(dtype), t64(b).to(dtype), absolute=absolute, reduction="none")
        assert torch.all(torch.isfinite(gc))
        assert torch.all(gc >= -1.0) and torch.all(gc <= 1.0)


def test_gc_anticorrelated_signed_and_contrast_inversion():
    """A step edge and its inversion: signed GC = -1, absolute GC = 1."""
    a = torch.zeros(1, 1, 16, 16)
    a[..., 4:12, 4:12] = 1.0
    b = 3.0 - 2.0 * a  # bright background, dark square (inverted contrast)
    assert gradient_consistency(a, b, absolute=False).item() == pytest.approx(-1.0, abs=1e-6)
    assert gradient_consistency(a, b, absolute=True).item() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("absolute", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gc_constant_image_is_finite_with_finite_gradient(absolute, dtype):
    torch.manual_seed(0)
    const = torch.full((2, 1, 12, 12), 0.7, dtype=dtype, requires_grad=True)
    other = torch.randn(2, 1, 12, 12, dtype=dtype, requires_grad=True)

    gc = gradient_consistency(const, other, absolute=absolute)
    gc.backward()
    assert torch.isfinite(gc) and gc.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.all(torch.isfinite(const.grad)) and torch.all(torch.isfinite(other.grad))

    const2 = const.detach().clone().requires_grad_(True)
    gc2 = gradient_consistency(const2, const2 * 1.0, absolute=absolute)
    gc2.backward()
    assert torch.isfinite(gc2) and gc2.item() == pytest.approx(0.0, abs=1e-12)
    assert torch.all(torch.isfinite(const2.grad))

    # the loss is finite too, and so is its gradient
    x = const.detach().clone().requires_grad_(True)
    y = torch.zeros_like(x, requires_grad=True)
    loss = gradient_consistency_loss(x, y, x, y, absolute=absolute)
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-12)
    assert torch.all(torch.isfinite(x.grad)) and torch.all(torch.isfinite(y.grad))


def test_gc_gradient_finite_at_identity_and_flows():
    torch.manual_seed(1)
    a = torch.randn(2, 1, 16, 16)
    b = a.clone().requires_grad_(True)
    gradient_consistency(a, b).backward()
    assert torch.all(torch.isfinite(b.grad))
    c = torch.randn(2, 1, 16, 16, requires_grad=True)
    gradient_consistency(a, c).backward()
    assert torch.all(torch.isfinite(c.grad)) and c.grad.abs().sum() > 0


def test_gc_half_precision_input_is_computed_in_float32():
    torch.manual_seed(2)
    a = torch.randn(1, 1, 16, 16)
    b = torch.randn(1, 1, 16, 16)
    ref = gradient_consistency(a.bfloat16().float(), b.bfloat16().float())
    got = gradient_consistency(a.bfloat16(), b.bfloat16())
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)


def test_gc_input_validation():
    with pytest.raises(ValueError):
        gradient_consistency(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError):
        gradient_consistency(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
    with pytest.raises(ValueError):
        gradient_consistency(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), reduction="sum")


# ---------------------------------------------------------------------------
# Loss terms
# ---------------------------------------------------------------------------
@SETTINGS
@given(p1=image_pairs(), p2=image_pairs(), absolute=st.booleans())
def test_gradient_consistency_loss_formula(p1, p2, absolute):
    x_mr, fake_ct = p1
    x_ct, fake_mr = p2
    got = gradient_consistency_loss(t64(x_mr), t64(fake_ct), t64(x_ct), t64(fake_mr), absolute=absolute)
    ref = 0.5 * ((1 - np_gc(x_mr, fake_ct, absolute)) + (1 - np_gc(x_ct, fake_mr, absolute)))
    assert got.dim() == 0
    assert got.item() == pytest.approx(ref, abs=1e-5)
    assert 0.0 <= got.item() <= 2.0


def test_gradient_consistency_loss_zero_for_perfect_structure():
    torch.manual_seed(3)
    mr = torch.randn(2, 1, 16, 16)
    ct = torch.randn(2, 1, 16, 16)
    # inverted contrast plus offset keeps |gradient| structure: loss 0 with absolute GC
    loss = gradient_consistency_loss(mr, -0.5 * mr + 0.2, ct, 2.0 * ct - 1.0)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    signed = gradient_consistency_loss(mr, -0.5 * mr + 0.2, ct, 2.0 * ct - 1.0, absolute=False)
    assert signed.item() == pytest.approx(1.0, abs=1e-5)  # 0.5 * ((1 + 1) + (1 - 1))


def test_lsgan_loss():
    pred = torch.tensor([[[[0.0, 1.0], [2.0, -1.0]]]])
    assert lsgan_loss(pred, True).item() == pytest.approx(np.mean([1.0, 0.0, 1.0, 4.0]))
    assert lsgan_loss(pred, False).item() == pytest.approx(np.mean([0.0, 1.0, 4.0, 1.0]))
    assert lsgan_loss(torch.ones(2, 1, 3, 3), True).item() == 0.0
    assert lsgan_loss(torch.zeros(2, 1, 3, 3), False).item() == 0.0
    p = torch.randn(2, 1, 5, 5, requires_grad=True)
    lsgan_loss(p, True).backward()
    torch.testing.assert_close(p.grad, 2 * (p.detach() - 1) / p.numel())


def test_l1_losses():
    torch.manual_seed(4)
    a = torch.randn(2, 1, 8, 8)
    b = torch.randn(2, 1, 8, 8)
    ref = (a - b).abs().mean().item()
    assert cycle_loss(a, b).item() == pytest.approx(ref, rel=1e-6)
    assert identity_loss(a, b).item() == pytest.approx(ref, rel=1e-6)
    assert cycle_loss(a, a).item() == 0.0
    with pytest.raises(ValueError):
        cycle_loss(a, b[:1])
    with pytest.raises(ValueError):
        identity_loss(a, b[..., :4])


# ---------------------------------------------------------------------------
# MIND (Heinrich et al. 2012), against an independent NumPy/SciPy reference
# ---------------------------------------------------------------------------
MIND_OFFSETS_REF = [(-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1)]


def np_mind(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """MIND of one 2D image, written from the paper's equations: Gaussian-weighted patch SSD to each
    neighbour (scipy's filter, edges replicated), variance as their mean clamped to [1e-3, 1e3] x its
    image mean, exp(-D / V), divided by the largest value over the neighbours."""
    from scipy.ndimage import gaussian_filter

    padded = np.pad(img, 1, mode="edge")
    h, w = img.shape
    distances = np.stack(
        [
            gaussian_filter(
                (img - padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]) ** 2, sigma, mode="nearest", truncate=2.0
            )
            for dy, dx in MIND_OFFSETS_REF
        ]
    )
    variance = distances.mean(axis=0)
    variance = np.clip(variance, 1e-3 * variance.mean(), 1e3 * variance.mean())
    variance = np.maximum(variance, 1e-6)
    mind = np.exp(-distances / variance)
    return mind / mind.max(axis=0)


@SETTINGS
@given(image_batches())
def test_mind_matches_numpy_reference(a):
    got = mind_descriptor(t64(a)).numpy()
    for i in range(a.shape[0]):
        np.testing.assert_allclose(got[i], np_mind(a[i, 0]), rtol=1e-9, atol=1e-12)


@SETTINGS
@given(image_batches(), st.floats(-2.0, 2.0), st.floats(-3.0, 3.0))
def test_mind_is_invariant_to_intensity_maps_that_keep_structure(a, log_scale, offset):
    """MIND compares structure, not intensity: any affine map (contrast inversion included) of an
    image gives its descriptor; the loss between an image and such a map of it is 0."""
    scale = float(np.exp(log_scale)) * (-1 if log_scale < 0 else 1)
    mapped = scale * a + offset
    assume(np.var(mapped) > 1e-6)
    np.testing.assert_allclose(mind_descriptor(t64(mapped)).numpy(), mind_descriptor(t64(a)).numpy(), atol=1e-7)
    assert float(mind_loss(t64(a), t64(mapped), t64(a), t64(a))) < 1e-7


def test_mind_values_lie_in_0_1_with_1_at_every_pixel_and_the_loss_sees_a_displacement():
    rng = np.random.default_rng(0)
    a = _structured(rng, "blobs", (2, 1, 24, 24))
    m = mind_descriptor(t64(a))
    assert m.shape == (2, 8, 24, 24) and float(m.min()) > 0 and float(m.max()) == 1.0
    torch.testing.assert_close(m.amax(dim=1), torch.ones(2, 24, 24, dtype=torch.float64))
    moved = np.roll(a, 3, axis=-1)
    assert float(mind_loss(t64(a), t64(moved), t64(a), t64(a))) > 0.01
    half = mind_descriptor(t64(a).float().to(torch.bfloat16))  # low precision in, float32 out
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match="mind_descriptor expects"):
        mind_descriptor(torch.zeros(1, 2, 8, 8))
