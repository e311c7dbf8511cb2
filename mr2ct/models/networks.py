"""Neural network architectures for MR->CT synthesis and CT segmentation.

All modules take and return image tensors laid out as ``(N, C, H, W)``
(batch, channels, height, width).  Inputs stored with
``memory_format=torch.channels_last`` are accepted; only the memory layout of
the output may differ, never its values.

Architectures
-------------
* :class:`ResnetGenerator` -- the image-transformation network of Johnson et
  al. (2016, "Perceptual losses for real-time style transfer and
  super-resolution") as used by the CycleGAN generators of Zhu et al. (2017,
  "Unpaired image-to-image translation using cycle-consistent adversarial
  networks", ICCV; appendix 7.2, "c7s1-64, d128, d256, R256 x 9, u128, u64,
  c7s1-3") and by Hiasa et al. (2018, "Cross-modality image synthesis from
  unpaired data using CycleGAN", SASHIMI/MICCAI workshop).
* :class:`PatchDiscriminator` -- the 70x70 PatchGAN of Isola et al. (2017,
  "Image-to-image translation with conditional adversarial networks", CVPR),
  also used by CycleGAN (appendix 7.2, "C64-C128-C256-C512").
* :class:`UNet2d` -- a small 2D U-Net after Ronneberger et al. (2015, "U-Net:
  convolutional networks for biomedical image segmentation", MICCAI) for the
  downstream segmentation of (real or synthetic) CT slices.

The layer choices (reflection padding, instance normalisation without affine
parameters and without running statistics, normal(0, 0.02) initialisation)
follow the public PyTorch CycleGAN reference implementation
(github.com/junyanz/pytorch-CycleGAN-and-pix2pix); the code here is an
independent re-implementation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "GeneratorSpec",
    "PatchDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "UNet2d",
    "init_weights",
]


def _instance_norm(num_features: int) -> nn.InstanceNorm2d:
    """Instance norm as in the CycleGAN reference: no affine, no running stats."""
    return nn.InstanceNorm2d(num_features, affine=False, track_running_stats=False)


def _check_image_batch(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, in_channels, H, W)``."""
    if x.dim() != 4:
        raise ValueError(f"{name} expects a 4D tensor (N, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[1] != in_channels:
        raise ValueError(f"{name} expects {in_channels} input channel(s); got shape {tuple(x.shape)}")


class ResnetBlock(nn.Module):
    """Residual block: ``x + IN(conv(pad(ReLU(IN(conv(pad(x)))))))``.

    Both convolutions are 3x3 with reflection padding of 1, so the block maps
    ``(N, C, H, W) -> (N, C, H, W)``; it requires ``H >= 2`` and ``W >= 2``
    (reflection padding needs the padding to be smaller than the size).
    """

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=True),
            _instance_norm(channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, bias=True),
            _instance_norm(channels),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, C, H, W)`` to ``(N, C, H, W)``."""
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator (Johnson et al. 2016; Zhu et al. 2017).

    Layout with the defaults (``c7s1-ngf, d2ngf, d4ngf, R4ngf x n_blocks,
    u2ngf, ungf, c7s1-out``):

    * reflection pad 3, 7x7 conv ``in_channels -> ngf``, instance norm, ReLU;
    * ``n_downsampling`` 3x3 stride-2 convs (zero padding 1), each followed by
      instance norm and ReLU; stage ``i`` has ``ngf * min(2**i, 4)`` channels,
      so the paper's two stages give ``ngf -> 2ngf -> 4ngf`` and a third stage
      stays at ``4ngf`` (width capped: on a grid twice as fine, the residual
      blocks then run on the same bottleneck, at the same cost, as on the
      coarse grid with two stages);
    * ``n_blocks`` :class:`ResnetBlock` at the bottleneck width;
    * ``n_downsampling`` 2x upsamplings back through the same widths, each
      followed by instance norm and ReLU: ``upsampling="transpose"`` is the
      paper's 3x3 stride-2 transposed convolution (padding 1, output_padding
      1); ``"resize"`` is nearest-neighbour 2x resizing followed by a 3x3
      convolution (reflection padding 1), which avoids the checkerboard
      pattern of strided transposed convolutions (Odena et al. 2016,
      "Deconvolution and checkerboard artifacts", Distill);
    * reflection pad 3, 7x7 conv ``ngf -> out_channels``, tanh.

    Convolutions have biases (instance norm without affine parameters does
    not make them redundant before the final layer, and the reference keeps
    them everywhere when instance norm is used).  With ``ngf=64``,
    ``n_blocks=9`` and 3 channels in and out this is the 11,378,179-parameter
    network of the CycleGAN paper; with 1 channel in and out it has
    11,365,633 parameters.

    Shapes: input ``(N, in_channels, H, W)`` -> output
    ``(N, out_channels, H, W)`` with values in ``(-1, 1)``.  ``H`` and ``W``
    must be divisible by ``2**n_downsampling`` and at least twice that (the
    residual blocks' reflection padding needs a bottleneck of at least 2x2);
    a ``ValueError`` is raised otherwise.
    """

    #: channel multiplier cap of the downsampling stages (the paper's bottleneck width, 4 ngf)
    MAX_MULT = 4

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_blocks: int = 9,
        dropout: float = 0.0,
        n_downsampling: int = 2,
        upsampling: Literal["transpose", "resize"] = "transpose",
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or ngf < 1 or n_blocks < 0 or n_downsampling < 0:
            raise ValueError(
                "in_channels, out_channels, ngf must be >= 1 and n_blocks, n_downsampling >= 0; got "
                f"{in_channels}, {out_channels}, {ngf}, {n_blocks}, {n_downsampling}"
            )
        if upsampling not in ("transpose", "resize"):
            raise ValueError(f"upsampling must be 'transpose' or 'resize'; got {upsampling!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.ngf = ngf
        self.n_blocks = n_blocks
        self.n_downsampling = n_downsampling
        self.upsampling = upsampling

        widths = [ngf * min(2**i, self.MAX_MULT) for i in range(n_downsampling + 1)]
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, kernel_size=7, bias=True),
            _instance_norm(ngf),
            nn.ReLU(inplace=True),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:]):  # downsampling
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=True),
                _instance_norm(c_out),
                nn.ReLU(inplace=True),
            ]
        for _ in range(n_blocks):
            layers.append(ResnetBlock(widths[-1], dropout=dropout))
        for c_in, c_out in zip(widths[:0:-1], widths[-2::-1]):  # upsampling, back through the widths
            if upsampling == "transpose":
                layers.append(
                    nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True)
                )
            else:
                layers += [
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    nn.ReflectionPad2d(1),
                    nn.Conv2d(c_in, c_out, kernel_size=3, bias=True),
                ]
            layers += [_instance_norm(c_out), nn.ReLU(inplace=True)]
        layers += [
            nn.ReflectionPad2d(3),
            nn.Conv2d(ngf, out_channels, kernel_size=7, bias=True),
            nn.Tanh(),
        ]
        self.model = nn.Sequential(*layers)

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this (``2**n_downsampling``)."""
        return 2**self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to ``(N, out_channels, H, W)`` in (-1, 1)."""
        _check_image_batch(x, self.in_channels, type(self).__name__)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        m = self.multiple
        if h % m or w % m:
            raise ValueError(
                f"{type(self).__name__} needs H and W divisible by {m} ({self.n_downsampling} stride-2 "
                f"downsamplings); got H={h}, W={w}. Pad or crop the input first."
            )
        if h < 2 * m or w < 2 * m:
            raise ValueError(
                f"{type(self).__name__} needs H, W >= {2 * m} (reflection padding in the "
                f"residual blocks at 1/{m} resolution); got H={h}, W={w}."
            )
        return self.model(x)


@dataclass(frozen=True)
class GeneratorSpec:
    """The architecture of a :class:`ResnetGenerator`: what a generator file stores beside its
    weights, so that the network that loads them is the network that wrote them."""

    in_channels: int = 1
    out_channels: int = 1
    ngf: int = 64
    n_blocks: int = 9
    n_downsampling: int = 2
    upsampling: str = "transpose"

    def build(self) -> ResnetGenerator:
        """A fresh network of this architecture (PyTorch's default initialisation)."""
        return ResnetGenerator(**asdict(self))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeneratorSpec:
        return cls(**{k: (str(v) if k == "upsampling" else int(v)) for k, v in values.items()})


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al. 2017; Zhu et al. 2017), LSGAN head.

    Layout for ``n_layers=3`` (``C64-C128-C256-C512`` plus output conv): all
    convolutions are 4x4 with zero padding 1;

    * conv ``in_channels -> ndf``, stride 2, LeakyReLU(0.2) (no norm);
    * for ``k = 1 .. n_layers-1``: conv stride 2 to ``ndf * min(2**k, 8)``
      channels, instance norm, LeakyReLU(0.2);
    * conv stride 1 to ``ndf * min(2**n_layers, 8)`` channels, instance norm,
      LeakyReLU(0.2);
    * conv stride 1 to 1 channel, no sigmoid (least-squares GAN, Mao et al.
      2017).

    With ``n_layers=3`` each output pixel sees a 70x70 input patch (the
    recursion ``r <- r + 3 j, j <- j s`` over the 4x4 convolutions).  With ``ndf=64`` and one
    input channel the network has 2,762,689 parameters (2,764,737 with the
    3 channels of the CycleGAN paper).

    Shapes: input ``(N, in_channels, H, W)`` -> output ``(N, 1, H', W')`` with
    ``H' = floor(H / 2**n_layers) - 2`` for ``H`` large enough (e.g. 256 ->
    30, 128 -> 14); raises ``ValueError`` if the output would be empty.
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if in_channels < 1 or ndf < 1 or n_layers < 1:
            raise ValueError(f"in_channels, ndf, n_layers must be >= 1; got {in_channels}, {ndf}, {n_layers}")
        self.in_channels = in_channels
        self.ndf = ndf
        self.n_layers = n_layers

        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1, bias=True),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        prev = ndf
        for k in range(1, n_layers):
            cur = ndf * min(2**k, 8)
            layers += [
                nn.Conv2d(prev, cur, kernel_size=4, stride=2, padding=1, bias=True),
                _instance_norm(cur),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            prev = cur
        cur = ndf * min(2**n_layers, 8)
        layers += [
            nn.Conv2d(prev, cur, kernel_size=4, stride=1, padding=1, bias=True),
            _instance_norm(cur),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(cur, 1, kernel_size=4, stride=1, padding=1, bias=True),
        ]
        self.model = nn.Sequential(*layers)

    def output_size(self, size: int) -> int:
        """Spatial output length for an input length ``size`` (per axis)."""
        for m in self.model:
            if isinstance(m, nn.Conv2d):
                k, s, p = m.kernel_size[0], m.stride[0], m.padding[0]
                size = (size + 2 * p - k) // s + 1  # type: ignore[operator]
                if size < 1:
                    return 0
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to patch scores ``(N, 1, H', W')``."""
        _check_image_batch(x, self.in_channels, type(self).__name__)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if self.output_size(h) < 1 or self.output_size(w) < 1:
            raise ValueError(
                f"{type(self).__name__}(n_layers={self.n_layers}) input H={h}, W={w} "
                "is too small: the patch-score map would be empty"
            )
        return self.model(x)


class _DoubleConv(nn.Sequential):
    """(3x3 conv, norm, ReLU) x 2: ``(N, C_in, H, W) -> (N, C_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, norm: Literal["instance", "batch"]) -> None:
        def make_norm(c: int) -> nn.Module:
            if norm == "batch":
                return nn.BatchNorm2d(c)
            return nn.InstanceNorm2d(c, affine=True, track_running_stats=False)

        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
            make_norm(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, kernel_size=3, padding=1, bias=False),
            make_norm(c_out),
            nn.ReLU(inplace=True),
        )


class UNet2d(nn.Module):
    """Small 2D U-Net (Ronneberger et al. 2015) returning per-pixel class logits.

    ``depth`` max-pool downsamplings; level ``i`` (0 = full resolution) has
    ``base * 2**i`` channels and the bottleneck ``base * 2**depth``.  Each
    level is (3x3 conv, norm, ReLU) x 2 with zero padding ("same" size).  The
    decoder upsamples by a 2x2 stride-2 transposed convolution
    (``up_mode="transpose"``) or by bilinear interpolation followed by a 1x1
    conv (``up_mode="bilinear"``), concatenates the encoder skip features,
    and applies another double conv.  A final 1x1 conv gives logits (no
    softmax).  ``norm`` is ``"instance"`` (affine instance norm; independent
    of batch composition and identical in train/eval mode) or ``"batch"``.

    Shapes: input ``(N, in_channels, H, W)`` -> logits
    ``(N, n_classes, H, W)`` for any ``H, W >= 1``: inputs whose size is not
    a multiple of ``2**depth`` are replicate-padded at the bottom/right
    internally and the logits are cropped back to ``H x W``.

    ``n_classes`` counts the background class too (use
    ``torch.nn.functional.cross_entropy`` on the logits).  It has a default
    (2) only so that ``in_channels`` can keep its default; pass it
    explicitly.
    """

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 2,
        base: int = 16,
        depth: int = 4,
        up_mode: Literal["transpose", "bilinear"] = "transpose",
        norm: Literal["instance", "batch"] = "instance",
    ) -> None:
        super().__init__()
        if in_channels < 1 or n_classes < 1 or base < 1 or depth < 0:
            raise ValueError(
                "in_channels, n_classes, base must be >= 1 and depth >= 0; got "
                f"{in_channels}, {n_classes}, {base}, {depth}"
            )
        if up_mode not in ("transpose", "bilinear"):
            raise ValueError(f"up_mode must be 'transpose' or 'bilinear'; got {up_mode!r}")
        if norm not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch'; got {norm!r}")
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.base = base
        self.depth = depth
        self.up_mode = up_mode

        chans = [base * 2**i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        c_prev = in_channels
        for c in chans:
            self.encoders.append(_DoubleConv(c_prev, c, norm))
            c_prev = c
        self.pool = nn.MaxPool2d(2)

        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for i in reversed(range(depth)):
            c_low, c_skip = chans[i + 1], chans[i]
            if up_mode == "transpose":
                up: nn.Module = nn.ConvTranspose2d(c_low, c_skip, kernel_size=2, stride=2)
            else:
                up = nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                    nn.Conv2d(c_low, c_skip, kernel_size=1),
                )
            self.ups.append(up)
            self.decoders.append(_DoubleConv(2 * c_skip, c_skip, norm))
        self.head = nn.Conv2d(chans[0], n_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(N, in_channels, H, W)`` to logits ``(N, n_classes, H, W)``."""
        _check_image_batch(x, self.in_channels, type(self).__name__)
        h, w = int(x.shape[-2]), int(x.shape[-1])
        m = 2**self.depth
        pad_h, pad_w = (-h) % m, (-w) % m
        if pad_h or pad_w:
            # replicate padding is defined for any pad size, unlike reflection
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")

        skips: list[torch.Tensor] = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < self.depth:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.ups, self.decoders):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        logits = self.head(x)
        return logits[..., :h, :w]


def init_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise ``module`` in place as in CycleGAN/pix2pix ("normal" init).

    Convolution, transposed-convolution and linear weights ~ N(0, std) with
    biases 0 (Radford et al. 2016, DCGAN; Zhu et al. 2017 sec. 4 / reference
    code); affine normalisation weights ~ N(1, std) with biases 0.
    Normalisation layers without affine parameters are left untouched.
    Returns ``module`` for chaining.
    """
    norm_types = (
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.InstanceNorm1d,
        nn.InstanceNorm2d,
        nn.InstanceNorm3d,
        nn.GroupNorm,
        nn.LayerNorm,
    )
    with torch.no_grad():
        for m in module.modules():
            if isinstance(
                m,
                (
                    nn.Conv1d,
                    nn.Conv2d,
                    nn.Conv3d,
                    nn.ConvTranspose1d,
                    nn.ConvTranspose2d,
                    nn.ConvTranspose3d,
                    nn.Linear,
                ),
            ):
                nn.init.normal_(m.weight, mean=0.0, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, norm_types):
                weight = getattr(m, "weight", None)
                bias = getattr(m, "bias", None)
                if weight is not None:
                    nn.init.normal_(weight, mean=1.0, std=std)
                if bias is not None:
                    nn.init.zeros_(bias)
    return module
