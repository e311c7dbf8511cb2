"""Tests for mr2ct.models.networks (small configurations except the parameter counts)."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mr2ct.models.networks import (
    PatchDiscriminator,
    ResnetGenerator,
    UNet2d,
    init_weights,
)


def small_generator(in_ch: int = 1, out_ch: int = 1, seed: int = 0) -> ResnetGenerator:
    torch.manual_seed(seed)
    return init_weights(ResnetGenerator(in_ch, out_ch, ngf=8, n_blocks=2))


# ---------------------------------------------------------------------------
# ResnetGenerator
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(8, 8), (16, 24), (32, 12), (20, 36)])
@pytest.mark.parametrize("channels", [(1, 1), (2, 3)])
def test_generator_output_shape(hw, channels):
    g = small_generator(*channels)
    x = torch.randn(2, channels[0], *hw)
    y = g(x)
    assert y.shape == (2, channels[1], *hw)
    assert y.dtype == x.dtype


@settings(deadline=None, max_examples=20)
@given(
    h4=st.integers(2, 6),
    w4=st.integers(2, 6),
    n=st.integers(1, 2),
    scale=st.floats(0.1, 100.0),
)
def test_generator_shape_and_tanh_range(h4, w4, n, scale):
    g = small_generator()
    torch.manual_seed(1)
    x = scale * torch.randn(n, 1, 4 * h4, 4 * w4)
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape
    assert torch.all(torch.isfinite(y))
    assert torch.all(y.abs() <= 1.0)
    assert isinstance(g.model[-1], nn.Tanh)


@pytest.mark.parametrize("hw", [(10, 12), (12, 10), (13, 16), (16, 18), (4, 4), (4, 8)])
def test_generator_rejects_bad_sizes(hw):
    g = small_generator()
    with pytest.raises(ValueError, match="H"):
        g(torch.randn(1, 1, *hw))


def test_generator_rejects_bad_rank_and_channels():
    g = small_generator()
    with pytest.raises(ValueError):
        g(torch.randn(1, 16, 16))
    with pytest.raises(ValueError):
        g(torch.randn(1, 2, 16, 16))


def test_generator_architecture():
    g = ResnetGenerator(1, 1, ngf=8, n_blocks=3)
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and all(not m.affine and not m.track_running_stats for m in norms)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 3
    convs = [m for m in g.modules() if type(m) is nn.Conv2d]
    assert convs[0].kernel_size == (7, 7) and convs[-1].kernel_size == (7, 7)
    assert [c.out_channels for c in convs[:3]] == [8, 16, 32]
    assert [c.stride for c in convs[1:3]] == [(2, 2), (2, 2)]
    ups = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(u.stride, u.output_padding, u.out_channels) for u in ups] == [
        ((2, 2), (1, 1), 16),
        ((2, 2), (1, 1), 8),
    ]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_scale_parameter_counts():
    # CycleGAN (Zhu et al. 2017) ResNet-9 generator: 11.378 M parameters (3 channels)
    g3 = ResnetGenerator(3, 3, ngf=64, n_blocks=9)
    assert count_parameters(g3) == 11_378_179
    g1 = ResnetGenerator(1, 1, ngf=64, n_blocks=9)
    assert count_parameters(g1) == 11_365_633
    assert round(count_parameters(g1) / 1e6, 1) == 11.4
    # 70x70 PatchGAN: 2.765 M (3 channels), ~2.8 M
    d3 = PatchDiscriminator(3, ndf=64, n_layers=3)
    assert count_parameters(d3) == 2_764_737
    d1 = PatchDiscriminator(1, ndf=64, n_layers=3)
    assert count_parameters(d1) == 2_762_689
    assert round(count_parameters(d1) / 1e6, 1) == 2.8


# ---------------------------------------------------------------------------
# PatchDiscriminator
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hw, out_hw", [((32, 32), (2, 2)), ((64, 48), (6, 4)), ((70, 70), (6, 6)), ((128, 40), (14, 3))]
)
def test_discriminator_output_shape(hw, out_hw):
    torch.manual_seed(0)
    d = init_weights(PatchDiscriminator(1, ndf=8, n_layers=3))
    y = d(torch.randn(2, 1, *hw))
    assert y.shape == (2, 1, *out_hw)
    assert d.output_size(hw[0]) == out_hw[0]


def test_discriminator_structure_lsgan():
    d = PatchDiscriminator(1, ndf=8, n_layers=3)
    assert not any(isinstance(m, nn.Sigmoid) for m in d.modules())
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1]
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 1]
    # no normalisation directly after the first conv
    assert isinstance(d.model[1], nn.LeakyReLU) and d.model[1].negative_slope == 0.2
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 3


def test_discriminator_rejects_too_small_input():
    d = PatchDiscriminator(1, ndf=4, n_layers=3)
    with pytest.raises(ValueError):
        d(torch.randn(1, 1, 16, 16))


def _measured_receptive_field(n_layers: int, size: int) -> tuple[int, int]:
    """Input extent (rows, cols) that influences one central output pixel.

    Instance norm couples every pixel through its statistics, so it is swapped
    for the identity; all conv weights are made positive so that no
    cancellation can hide a connection (LeakyReLU has positive slope
    everywhere).  The nonzero region of d out[c] / d input is then exactly the
    receptive field of that output pixel.
    """
    d = PatchDiscriminator(1, ndf=2, n_layers=n_layers).double()
    d = copy.deepcopy(d)
    for i, m in enumerate(d.model):
        if isinstance(m, nn.InstanceNorm2d):
            d.model[i] = nn.Identity()
        elif isinstance(m, nn.Conv2d):
            with torch.no_grad():
                m.weight.fill_(0.1)
                m.bias.zero_()
    x = torch.randn(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = d(x)
    oh, ow = y.shape[-2:]
    y[0, 0, oh // 2, ow // 2].backward()
    nz = x.grad[0, 0] != 0
    rows = torch.nonzero(nz.any(dim=1)).flatten()
    cols = torch.nonzero(nz.any(dim=0)).flatten()
    # contiguous block away from the zero-padded border
    assert rows.min() > 0 and rows.max() < size - 1
    assert cols.min() > 0 and cols.max() < size - 1
    assert torch.all(nz[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("n_layers, size, expected", [(1, 48, 16), (2, 64, 34), (3, 128, 70)])
def test_patchgan_receptive_field(n_layers, size, expected):
    assert _measured_receptive_field(n_layers, size) == (expected, expected)


# ---------------------------------------------------------------------------
# Determinism, memory format, initialisation
# ---------------------------------------------------------------------------
def test_determinism_same_seed_same_output():
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(seed)
        g = init_weights(ResnetGenerator(1, 1, ngf=8, n_blocks=2))
        d = init_weights(PatchDiscriminator(1, ndf=8, n_layers=3))
        x = torch.randn(2, 1, 32, 32)
        with torch.no_grad():
            return g(x), d(x)

    g1, d1 = run(123)
    g2, d2 = run(123)
    assert torch.equal(g1, g2) and torch.equal(d1, d2)
    g3, _ = run(124)
    assert not torch.equal(g1, g3)


def test_repeated_forward_is_deterministic():
    g = small_generator()
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(g(x), g(x))


def test_channels_last_inputs():
    torch.manual_seed(0)
    g = small_generator()
    d = init_weights(PatchDiscriminator(1, ndf=8, n_layers=3))
    u = init_weights(UNet2d(1, 3, base=4, depth=2))
    x = torch.randn(2, 1, 32, 32)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        for net in (g, d, u):
            ref = net(x)
            net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
            torch.testing.assert_close(net(x_cl), ref, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(net_cl(x_cl), ref, atol=1e-5, rtol=1e-5)


def test_init_weights():
    torch.manual_seed(0)
    g = init_weights(ResnetGenerator(1, 1, ngf=16, n_blocks=1))
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(w.mean().item()) < 2e-3
    assert w.std().item() == pytest.approx(0.02, rel=0.05)
    assert all(torch.all(m.bias == 0) for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))
    u = init_weights(UNet2d(1, 2, base=8, depth=2))
    nw = torch.cat([m.weight.flatten() for m in u.modules() if isinstance(m, nn.InstanceNorm2d)])
    assert nw.mean().item() == pytest.approx(1.0, abs=0.01)
    assert nw.std().item() == pytest.approx(0.02, rel=0.3)
    assert all(torch.all(m.bias == 0) for m in u.modules() if isinstance(m, nn.InstanceNorm2d))
    assert init_weights(g, std=0.05) is g


# ---------------------------------------------------------------------------
# UNet2d
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(32, 32), (16, 48), (20, 28), (7, 9)])
@pytest.mark.parametrize("up_mode", ["transpose", "bilinear"])
def test_unet_output_shape(hw, up_mode):
    torch.manual_seed(0)
    u = UNet2d(in_channels=1, n_classes=4, base=4, depth=3, up_mode=up_mode)
    y = u(torch.randn(2, 1, *hw))
    assert y.shape == (2, 4, *hw)
    assert torch.all(torch.isfinite(y))


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_unet_depths_and_batchnorm(depth):
    u = UNet2d(in_channels=2, n_classes=3, base=4, depth=depth, norm="batch")
    u.eval()
    y = u(torch.randn(1, 2, 32, 32))
    assert y.shape == (1, 3, 32, 32)


def test_unet_default_depth_channels_and_backward():
    u = UNet2d(1, n_classes=5)
    assert u.depth == 4 and u.base == 16
    x = torch.randn(1, 1, 32, 32)
    logits = u(x)
    assert logits.shape == (1, 5, 32, 32)
    target = torch.randint(0, 5, (1, 32, 32))
    nn.functional.cross_entropy(logits, target).backward()
    assert all(p.grad is not None and torch.all(torch.isfinite(p.grad)) for p in u.parameters())


def test_unet_rejects_bad_input():
    u = UNet2d(1, n_classes=2, base=4, depth=2)
    with pytest.raises(ValueError):
        u(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError):
        UNet2d(1, n_classes=2, up_mode="nearest")  # type: ignore[arg-type]
