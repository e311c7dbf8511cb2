"""How much the CPU's kernel dispatch changes a training run (the cross-machine question).

Usage: python benchmarks/kernel_dispatch.py [--steps 20] [--size 64]

Runs the same seeded CycleGAN + GC steps (default networks, fp32, one thread, random data
of a fixed seed) three times in fresh processes: twice as this machine dispatches (the
repeat must be bit-identical), once with torch's kernels pinned to AVX2
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``, what an older x86 CPU would run).
Prints one JSON line: whether the repeat is identical, and the largest relative difference
of the losses at the first and the last step and of G_CT's weights after the last step
between the two dispatches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = r"""
import sys, torch, numpy as np
from mr2ct.models.training import TrainSettings, new_run
torch.set_num_threads(1)
steps, size, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
run = new_run(TrainSettings(model="cyclegan_gc", gc_weight=5.0, amp="none", seed=7), torch.device("cpu"))
rng = torch.Generator().manual_seed(11)
losses = []
for _ in range(steps):
    mr = torch.rand(1, 1, size, size, generator=rng) * 2 - 1
    ct = torch.rand(1, 1, size, size, generator=rng) * 2 - 1
    losses.append(run.train_step(mr, ct))
weights = torch.cat([p.detach().flatten() for p in run.g_ct.parameters()]).numpy()
np.savez(out, losses=np.asarray(losses), weights=weights, capability=torch.backends.cpu.get_cpu_capability())
"""


def run(steps: int, size: int, out: Path, env: dict[str, str]) -> dict:
    import numpy as np

    subprocess.run(
        [sys.executable, "-c", WORKER, str(steps), str(size), str(out)],
        check=True,
        env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
    )
    with np.load(out) as z:
        return {k: z[k] for k in z.files}


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mr2ct-dispatch-"))
    native = run(args.steps, args.size, folder / "a.npz", {})
    again = run(args.steps, args.size, folder / "b.npz", {})
    pinned = run(args.steps, args.size, folder / "c.npz", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"})

    def rel(a, b):
        return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))

    print(
        json.dumps(
            {
                "steps": args.steps,
                "size": args.size,
                "capability": str(native["capability"]),
                "pinned_capability": str(pinned["capability"]),
                "repeat_identical": bool(
                    np.array_equal(native["losses"], again["losses"])
                    and np.array_equal(native["weights"], again["weights"])
                ),
                "first_step_losses_rel_diff": rel(native["losses"][0], pinned["losses"][0]),
                "last_step_losses_rel_diff": rel(native["losses"][-1], pinned["losses"][-1]),
                "weights_max_abs_diff": float(np.max(np.abs(native["weights"] - pinned["weights"]))),
                "weights_rms": float(np.sqrt(np.mean(native["weights"] ** 2))),
            }
        )
    )


if __name__ == "__main__":
    main()
