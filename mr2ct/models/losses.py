"""Loss functions for CycleGAN MR<->CT synthesis with gradient consistency.

Images are tensors ``(N, C, H, W)``; the gradient-consistency functions are
meant for single-channel images ``(N, 1, H, W)`` (several channels are
accepted and pooled into one per-image correlation).

Objective of Hiasa et al. (2018, "Cross-modality image synthesis from
unpaired data using CycleGAN: effects of gradient consistency loss and
training data size", SASHIMI workshop at MICCAI, arXiv:1803.06629)::

    L = L_GAN(G_CT, D_CT) + L_GAN(G_MR, D_MR)
        + lambda_cyc * L_cyc + lambda_gc * L_gc   (+ optional identity term)

with the least-squares adversarial loss (Mao et al. 2017, as used by Zhu et
al. 2017, CycleGAN), the L1 cycle loss (Zhu et al. 2017, eq. 2), the L1
identity loss (Zhu et al. 2017, sec. 5.2, after Taigman et al. 2017) and the
gradient-consistency loss defined below.  Weights are applied by the caller.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = [
    "image_gradients",
    "normalized_cross_correlation",
    "gradient_consistency",
    "gradient_consistency_loss",
    "lsgan_loss",
    "cycle_loss",
    "identity_loss",
    "mind_descriptor",
    "mind_loss",
]


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.dim() != 4 or b.dim() != 4:
        raise ValueError(f"{name} expects 4D tensors (N, C, H, W); got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(f"{name} expects equal shapes; got {tuple(a.shape)} and {tuple(b.shape)}")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise TypeError(f"{name} expects floating-point tensors; got {a.dtype} and {b.dtype}")


def _work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, otherwise float32 (never half precision)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central-difference image gradients ``(d/dx, d/dy)`` of ``x`` ``(N, C, H, W)``.

    ``d/dx`` is along the width axis, ``d/dy`` along the height axis::

        gx[i, j] = (x[i, j+1] - x[i, j-1]) / 2
        gy[i, j] = (x[i+1, j] - x[i-1, j]) / 2

    the cross-correlation with the 3x3 kernels ``[[0, 0, 0], [-1, 0, 1], [0, 0, 0]] / 2``
    and its transpose, per channel, after replicate padding by one pixel (so at the
    borders the one-sided difference is halved), computed by shifted differences.
    Both outputs are ``(N, C, H, W)``.
    """
    if x.dim() != 4:
        raise ValueError(f"image_gradients expects (N, C, H, W); got {tuple(x.shape)}")
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    # the same numbers as the 3x3 cross-correlation (halving is exact), without a convolution
    gx = (xp[:, :, 1:-1, 2:] - xp[:, :, 1:-1, :-2]) * 0.5
    gy = (xp[:, :, 2:, 1:-1] - xp[:, :, :-2, 1:-1]) * 0.5
    return gx, gy


def normalized_cross_correlation(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-image normalised cross-correlation of ``p`` and ``q`` ``(N, ...)`` -> ``(N,)``.

    ``NCC(P, Q) = sum (P - mean P)(Q - mean Q) / sqrt(sum (P - mean P)^2 * sum (Q - mean Q)^2)``
    (Penney et al. 1998), summed over
    all non-batch dimensions.  The product of the two sums of squares is
    clamped from below at ``eps`` inside the square root, so the result equals
    the exact NCC whenever that product is at least ``eps`` and is 0 (with a
    finite autograd gradient) when ``p`` or ``q`` is constant.  Because the
    sums are not normalised by the pixel count, ``eps = 1e-8`` only matters
    for (nearly) constant inputs.
    """
    n = p.shape[0]
    p = p.reshape(n, -1)
    q = q.reshape(n, -1)
    p = p - p.mean(dim=1, keepdim=True)
    q = q - q.mean(dim=1, keepdim=True)
    num = (p * q).sum(dim=1)
    den = torch.sqrt(torch.clamp((p * p).sum(dim=1) * (q * q).sum(dim=1), min=eps))
    return num / den


def gradient_consistency(
    a: torch.Tensor,
    b: torch.Tensor,
    absolute: bool = True,
    eps: float = 1e-8,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """Gradient consistency (gradient correlation) GC of images ``a``, ``b`` ``(N, 1, H, W)``.

    Per image (Penney et al. 1998, "A comparison of similarity measures for
    use in 2-D-3-D medical image registration", IEEE TMI 17(4):586-595,
    "gradient correlation"; Hiasa et al. 2018)::

        GC(a, b) = 1/2 * ( NCC(grad_x a, grad_x b) + NCC(grad_y a, grad_y b) )

    with the central-difference gradients of :func:`image_gradients`
    (replicate padding) and :func:`normalized_cross_correlation`.  Returns the
    batch mean (a 0-d tensor) for ``reduction="mean"`` or the per-image
    values ``(N,)`` for ``reduction="none"``.

    ``absolute=True`` (default) correlates the absolute values ``|grad|`` of
    the directional gradients, as the first author's later public
    implementation does (Yuta Hiasa's ``GradientCorrelationLoss``, found in
    code redistributed by his NAIST laboratory, takes ``torch.abs`` of each
    directional gradient before the NCC; it defaults to Sobel kernels without
    padding, whereas this function uses central differences with replicate
    padding).  Taking
    magnitudes makes GC insensitive to contrast inversion (MR and CT
    intensities of the same tissue can be ordered differently):
    ``GC(a, -a) = 1``.  With ``absolute=False`` the signed gradients are used
    (Penney et al.'s original definition) and ``GC(a, -a) = -1``.

    Properties: ``GC(a, a) = 1`` when neither directional gradient field of
    ``a`` is constant; ``GC(a, s*a + t) = GC(a, a)`` for ``s > 0`` (any
    ``s != 0`` with ``absolute=True``); symmetric in ``a`` and ``b``; values
    in ``[-1, 1]`` (clamped to absorb floating-point excess only).

    Degenerate inputs: the NCC of a constant gradient field is defined as 0
    (see ``eps`` in :func:`normalized_cross_correlation`).  So for a constant
    image (or any image whose x- and y-gradient fields are both constant) GC
    is 0, and a directional term with a constant field contributes 0, e.g.
    GC of a pure horizontal ramp with itself is 0.5.  Values and autograd
    gradients are always finite.  The computation runs in float32 (float64
    if an input is float64), with autocast disabled.
    """
    _check_pair(a, b, "gradient_consistency")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none'; got {reduction!r}")
    dtype = _work_dtype(a, b)
    with torch.autocast(device_type=a.device.type, enabled=False):
        a = a.to(dtype)
        b = b.to(dtype)
        ax, ay = image_gradients(a)
        bx, by = image_gradients(b)
        if absolute:
            ax, ay, bx, by = ax.abs(), ay.abs(), bx.abs(), by.abs()
        gc = 0.5 * (normalized_cross_correlation(ax, bx, eps) + normalized_cross_correlation(ay, by, eps))
        gc = torch.clamp(gc, -1.0, 1.0)
    return gc.mean() if reduction == "mean" else gc


def gradient_consistency_loss(
    x_mr: torch.Tensor,
    fake_ct: torch.Tensor,
    x_ct: torch.Tensor,
    fake_mr: torch.Tensor,
    absolute: bool = True,
) -> torch.Tensor:
    """Unweighted gradient-consistency loss of Hiasa et al. (2018).

    ``L_gc = 1/2 * [ (1 - GC(x_mr, G_CT(x_mr))) + (1 - GC(x_ct, G_MR(x_ct))) ]``

    where ``fake_ct = G_CT(x_mr)`` and ``fake_mr = G_MR(x_ct)``; all tensors
    ``(N, 1, H, W)`` (the two pairs may differ in shape from each other).
    Returns a 0-d tensor in ``[0, 2]``; the caller multiplies by the GC
    weight (lambda_gc).
    """
    gc_mr = gradient_consistency(x_mr, fake_ct, absolute=absolute)
    gc_ct = gradient_consistency(x_ct, fake_mr, absolute=absolute)
    return 0.5 * ((1.0 - gc_mr) + (1.0 - gc_ct))


def lsgan_loss(prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017; CycleGAN, Zhu et al. 2017 sec. 4).

    ``mean((D(x) - 1)^2)`` if ``target_is_real`` else ``mean(D(x)^2)``, where
    ``prediction`` is the raw (no sigmoid) discriminator output of any shape,
    e.g. ``(N, 1, H', W')`` PatchGAN scores.  Returns a 0-d tensor.
    """
    target = torch.ones_like(prediction) if target_is_real else torch.zeros_like(prediction)
    return F.mse_loss(prediction, target)


def cycle_loss(reconstructed: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Cycle-consistency loss: mean absolute error ``mean|F(G(x)) - x|`` (Zhu et al. 2017, eq. 2)."""
    if reconstructed.shape != original.shape:
        raise ValueError(f"cycle_loss shape mismatch: {tuple(reconstructed.shape)} vs {tuple(original.shape)}")
    return F.l1_loss(reconstructed, original)


def identity_loss(same: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Identity-mapping loss: mean absolute error ``mean|G(y) - y|`` (Zhu et al. 2017, sec. 5.2)."""
    if same.shape != original.shape:
        raise ValueError(f"identity_loss shape mismatch: {tuple(same.shape)} vs {tuple(original.shape)}")
    return F.l1_loss(same, original)


#: The search region of :func:`mind_descriptor`: the 8-neighbourhood (2D counterpart of the
#: six-neighbourhood of Heinrich et al. 2012), as (row, column) offsets.
MIND_OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def _shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` moved by ``(dy, dx)`` pixels: ``out[i, j] = x[i + dy, j + dx]``, edges replicated."""
    pad = max(abs(dy), abs(dx))
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    h, w = x.shape[-2:]
    return xp[..., pad + dy : pad + dy + h, pad + dx : pad + dx + w]


def mind_descriptor(x: torch.Tensor, sigma: float = 1.0, eps: float = 1e-6) -> torch.Tensor:
    """Modality independent neighbourhood descriptor (MIND) of single-channel images ``(N, 1, H, W)``.

    Heinrich et al. (2012, "MIND: modality independent neighbourhood descriptor for
    multi-modal deformable registration", Medical Image Analysis 16(7):1423-1435), eq. 4-6,
    in 2D: for each offset ``r`` of :data:`MIND_OFFSETS` the patch distance
    ``D(x, r) = G_sigma * (I - I(. + r))^2`` (Gaussian-weighted sum of squared differences
    of the patch around a pixel and the patch around its neighbour), the local variance
    ``V(x) = mean_r D(x, r)`` (clamped to [0.001, 1000] times its image mean, as the
    authors' code does, so flat regions do not divide by zero) and
    ``MIND(x, r) = exp(-D(x, r) / V(x))``, normalised so that its largest value over ``r``
    is 1. Returns ``(N, 8, H, W)`` in (0, 1]; computed in float32 (float64 for float64
    input) with autocast off. A descriptor of local self-similarity: it is the same for
    images that show the same structures with other intensities, which is what lets it
    compare an MR with a CT (Yang et al. 2018, structure-constrained CycleGAN for MR→CT).
    """
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"mind_descriptor expects (N, 1, H, W); got {tuple(x.shape)}")
    dtype = _work_dtype(x)
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(dtype)
        radius = max(1, int(round(2 * sigma)))
        taps = torch.arange(-radius, radius + 1, dtype=dtype, device=x.device)
        g = torch.exp(-(taps**2) / (2 * sigma**2))
        g = g / g.sum()
        n = len(MIND_OFFSETS)
        sq = torch.cat([(x - _shift(x, dy, dx)) ** 2 for dy, dx in MIND_OFFSETS], dim=1)
        sq = F.pad(sq, (radius, radius, radius, radius), mode="replicate")
        distance = F.conv2d(sq, g.view(1, 1, 1, -1).expand(n, 1, 1, -1).contiguous(), groups=n)
        distance = F.conv2d(distance, g.view(1, 1, -1, 1).expand(n, 1, -1, 1).contiguous(), groups=n)
        variance = distance.mean(dim=1, keepdim=True)
        level = variance.mean(dim=(1, 2, 3), keepdim=True)
        variance = torch.maximum(torch.minimum(variance, 1000 * level), 0.001 * level).clamp_min(eps)
        mind = torch.exp(-distance / variance)
        return mind / mind.amax(dim=1, keepdim=True)


def mind_loss(x_mr: torch.Tensor, fake_ct: torch.Tensor, x_ct: torch.Tensor, fake_mr: torch.Tensor) -> torch.Tensor:
    """Structure loss: mean absolute difference of the MIND descriptors of each input and its translation,
    ``1/2 [ mean|MIND(x_mr) - MIND(G_CT(x_mr))| + mean|MIND(x_ct) - MIND(G_MR(x_ct))| ]``
    (Yang et al. 2018, "Unpaired brain MR-to-CT synthesis using a structure-constrained
    CycleGAN", DLMIA, LNCS 11045). Images ``(N, 1, H, W)``; a 0-d tensor in [0, 1].
    """
    a = (mind_descriptor(x_mr) - mind_descriptor(fake_ct)).abs().mean()
    b = (mind_descriptor(x_ct) - mind_descriptor(fake_mr)).abs().mean()
    return 0.5 * (a + b)
