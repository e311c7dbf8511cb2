"""Benchmark: mr2ct.evaluation.metrics surface distances vs. MedPy 0.5.2.

Computes both ASSD and HD95 (mm) for one pair of overlapping, slightly
different filled ellipsoids in a 100 x 256 x 256 volume with anisotropic
spacing (2.5, 1.0, 1.0) mm -- roughly the extent of a pelvis+femur bone mask
in a cropped pelvic CT -- once with MedPy (``assd`` + ``hd95``: 4 surface
extractions and 4 full-volume EDTs) and once with
``mr2ct.evaluation.metrics.surface_distances`` (one pass).  Each timing is the best of
``--repeats`` runs (time.perf_counter).  Prints one JSON line.

Usage (from the repository root)::

    python benchmarks/surface_metrics.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mr2ct.evaluation.metrics import surface_distances  # noqa: E402

SHAPE = (100, 256, 256)
SPACING = (2.5, 1.0, 1.0)


def ellipsoid(shape: tuple[int, ...], centre_mm, radii_mm, spacing) -> np.ndarray:
    """Filled axis-aligned ellipsoid; centre/radii in mm, array-axis order."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    acc = np.zeros(shape, dtype=np.float64)
    for g, c, r, s in zip(grids, centre_mm, radii_mm, spacing):
        acc = acc + ((g * s - c) / r) ** 2
    return acc <= 1.0


def make_pair() -> tuple[np.ndarray, np.ndarray]:
    # Reference: ~170 mm (z) x 150 mm (y) x 230 mm (x) ellipsoid.
    ref = ellipsoid(SHAPE, (125.0, 128.0, 128.0), (85.0, 75.0, 115.0), SPACING)
    # Prediction: shifted by a few mm and slightly different radii.
    pred = ellipsoid(SHAPE, (130.0, 124.0, 131.0), (80.0, 78.0, 110.0), SPACING)
    return pred, ref


def best_of(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    best = float("inf")
    out: object = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from medpy.metric import binary as mb

    pred, ref = make_pair()

    def ours() -> tuple[float, float]:
        sd = surface_distances(pred, ref, SPACING)
        return sd.assd, sd.hd95

    def medpy() -> tuple[float, float]:
        return (
            float(mb.assd(pred, ref, voxelspacing=SPACING, connectivity=1)),
            float(mb.hd95(pred, ref, voxelspacing=SPACING, connectivity=1)),
        )

    t_ours, (assd_o, hd95_o) = best_of(ours, args.repeats)
    t_medpy, (assd_m, hd95_m) = best_of(medpy, args.repeats)
    print(
        json.dumps(
            {
                "benchmark": "surface_metrics_assd_hd95",
                "shape": list(SHAPE),
                "spacing_mm": list(SPACING),
                "voxels_pred": int(pred.sum()),
                "voxels_ref": int(ref.sum()),
                "repeats": args.repeats,
                "mr2ct_s": round(t_ours, 4),
                "medpy_s": round(t_medpy, 4),
                "speedup": round(t_medpy / t_ours, 2),
                "assd_mm": assd_o,
                "hd95_mm": hd95_o,
                "max_abs_diff_vs_medpy": max(abs(assd_o - assd_m), abs(hd95_o - hd95_m)),
                "numpy": np.__version__,
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
