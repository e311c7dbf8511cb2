"""Where networks run: the device a job uses and the numeric precision it trains in.

One place for the choice every torch job makes (training, synthesis, segmentation):
``"auto"`` is CUDA when present, else the CPU; training additionally sets torch up for
reproducible runs (:func:`training_device`).
"""

from __future__ import annotations

import torch

__all__ = ["bf16_supported", "resolve_precision", "select_device", "training_device"]


def select_device(name: str) -> torch.device:
    """The device of a job: ``"auto"`` is CUDA when available, else the CPU; otherwise ``name``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def training_device(name: str) -> torch.device:
    """:func:`select_device`, set up for reproducible training.

    Deterministic algorithms where torch has them (``warn_only``: an operation without one
    warns instead of failing), cuDNN autotuning off (it may pick different kernels from run
    to run) and deterministic cuDNN kernels; on CUDA, TF32 matmuls and convolutions (fp32
    runs; bf16 autocast is chosen by ``train.amp``).

    Deterministic mode would also fill every new tensor with NaN
    (``torch.utils.deterministic.fill_uninitialized_memory``), a debugging aid that catches
    kernels reading memory they never wrote; it does not make any kernel more deterministic
    and cost 3-6 % of a CPU training step here (BENCHMARKS.md, *Training step at full speed*),
    so it is off. Bit-identical reruns and resumes are tested with it off.
    """
    device = select_device(name)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively, as torch reports it (not guessed from a CPU name)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    caps = torch.cpu.get_capabilities()
    return any(bool(caps.get(flag)) for flag in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def resolve_precision(amp: str, device: torch.device) -> str:
    """``"bf16"`` (autocast) or ``"fp32"`` for the setting ``train.amp`` on ``device``."""
    if amp == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return "bf16" if amp == "bf16" else "fp32"
