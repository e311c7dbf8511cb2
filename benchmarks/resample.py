"""Slices back to the full-resolution grid: separable matrix products against scipy.

Usage: OMP_NUM_THREADS=1 python benchmarks/resample.py [--size 64] [--matrix 448 320] [--slices 73] [--classes 13]

``SliceGrid.to_volume`` (two small matrix products per slice) against
``scipy.ndimage.affine_transform(order=1)`` on the same map (what it replaced), for one
channel and for the per-class probability maps of a segmentation (``--classes``, argmax at
full resolution, as ``segment_ct`` does). Default sizes: one default phantom subject.
Prints one JSON line; the maximum difference between the two is part of it.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy import ndimage

from mr2ct.data.preprocess import SliceGrid, resample_planes


def scipy_to_volume(grid: SliceGrid, slices: np.ndarray, shape_xy: tuple[int, int], cval: float) -> np.ndarray:
    m, fx, fy = grid._factors()
    ci, cj = grid.centre_ij
    out = ndimage.affine_transform(
        slices,
        np.array([1.0, -1.0 / fy, -1.0 / fx]),
        offset=(0.0, m + cj / fy, m + ci / fx),
        output_shape=(slices.shape[0], shape_xy[1], shape_xy[0]),
        order=1,
        mode="constant",
        cval=cval,
        prefilter=False,
    )
    return out.transpose(2, 1, 0)


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--matrix", type=int, nargs=2, default=[448, 320])
    parser.add_argument("--slices", type=int, default=73)
    parser.add_argument("--classes", type=int, default=13)
    args = parser.parse_args()
    shape_xy = tuple(args.matrix)
    grid = SliceGrid(args.size, 440.0 / args.size, (shape_xy[0] / 2 - 0.5, shape_xy[1] / 2 + 0.3), (1.0, 1.0))
    rng = np.random.default_rng(0)
    one = rng.normal(size=(args.slices, args.size, args.size)).astype(np.float32)
    t_new, new = best_of(lambda: grid.to_volume(one, shape_xy, cval=-1024.0))
    t_old, old = best_of(lambda: scipy_to_volume(grid, one, shape_xy, -1024.0))

    probs = rng.random((args.slices, args.classes, args.size, args.size)).astype(np.float32)
    weights = grid.volume_weights(shape_xy)
    fill = np.zeros((args.classes, 1, 1), dtype=np.float32)
    fill[0] = 1.0

    def argmax_new() -> np.ndarray:  # what segment_ct does
        labels = np.empty((*shape_xy, args.slices), dtype=np.uint8)
        for k in range(args.slices):
            labels[:, :, k] = resample_planes(probs[k], weights, fill).argmax(axis=0).T
        return labels

    def argmax_old() -> np.ndarray:
        best = scipy_to_volume(grid, probs[:, 0], shape_xy, 1.0)
        labels = np.zeros(best.shape, dtype=np.uint8)
        for c in range(1, args.classes):
            p = scipy_to_volume(grid, probs[:, c], shape_xy, 0.0)
            labels[p > best] = c
            np.maximum(best, p, out=best)
        return labels

    t_new_seg, seg_new = best_of(argmax_new, repeats=1)
    t_old_seg, seg_old = best_of(argmax_old, repeats=1)
    print(
        json.dumps(
            {
                "grid": [args.size, args.size],
                "volume": [*shape_xy, args.slices],
                "classes": args.classes,
                "to_volume_s": round(t_new, 3),
                "scipy_s": round(t_old, 3),
                "speedup": round(t_old / t_new, 1),
                "max_abs_difference": float(np.abs(new - old).max()),
                "labels_s": round(t_new_seg, 3),
                "labels_scipy_s": round(t_old_seg, 3),
                "labels_speedup": round(t_old_seg / t_new_seg, 1),
                "labels_agreement": float((seg_new == seg_old).mean()),
            }
        )
    )


if __name__ == "__main__":
    main()
