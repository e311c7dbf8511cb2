"""The CUDA path (cluster GPUs): runs only where a GPU is present, skipped with the reason elsewhere."""

from __future__ import annotations

import pytest
import torch

from mr2ct.models.devices import training_device
from mr2ct.models.training import TrainSettings, new_run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU-only torch build or no GPU)"
    ),
]


@pytest.mark.parametrize("amp", ["none", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_training_steps_on_gpu_give_finite_losses(amp, channels_last):
    settings = TrainSettings(
        model="cyclegan_gc",
        gc_weight=5.0,
        ngf=8,
        n_blocks=2,
        ndf=8,
        batch_size=2,
        amp=amp,
        channels_last=channels_last,
        device="cuda",
    )
    run = new_run(settings, torch.device("cuda"))
    mr = torch.rand(2, 1, 32, 32, device="cuda") * 2 - 1
    ct = torch.rand(2, 1, 32, 32, device="cuda") * 2 - 1
    if channels_last:
        mr, ct = mr.contiguous(memory_format=torch.channels_last), ct.contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        losses = run.train_step(mr, ct)
    assert all(torch.isfinite(torch.tensor(v)) for v in losses[:6])
    assert next(run.g_ct.parameters()).device.type == "cuda"


def test_training_device_on_cuda_is_reproducible_and_uses_tf32():
    device = training_device("auto")
    assert device.type == "cuda"
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
