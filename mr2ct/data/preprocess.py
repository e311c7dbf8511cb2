"""Per-subject preprocessing into the training cache: axial slices at training resolution.

Each subject's volumes (canonical RAS+ order, see :mod:`mr2ct.data.io`) are cut into
axial slices (array axis 2) and resampled in plane onto a square grid of
``image_size`` pixels covering ``fov_mm`` millimetres, centred on the body
mask. Slices are stored in radiological display orientation: row 0 anterior,
column 0 the patient's right. Intensities are normalised to [−1, 1]:

* CT by a monotone piecewise-linear map of HU (``ct_hu_points`` →
  ``ct_norm_points``, clipped outside), which is inverted exactly on synthesis;
  the default gives soft tissue more of the range than a plain window, which
  a CycleGAN trial found to lower MAE (BENCHMARKS.md, convergence study);
* MR by robust percentiles of the voxels inside the body mask (MR has no
  absolute scale).

The cache (``.npz``, uncompressed) also holds the geometry needed to resample
slices back onto the subject's original grid (:meth:`SliceGrid.to_volume`), so
training never decodes NIfTI again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from mr2ct.data.cohort import SubjectFiles
from mr2ct.data.io import Volume, atomic_path, read_volume

__all__ = [
    "PreprocessSettings",
    "context_stack",
    "SliceGrid",
    "denormalise_ct",
    "load_preprocessed",
    "preprocess_to_cache",
    "normalise_ct",
    "PreprocessedSubject",
    "preprocess_subject",
    "save_preprocessed",
]


@dataclass(frozen=True)
class PreprocessSettings:
    """Resolution and intensity normalisation of the training cache."""

    image_size: int = 64
    fov_mm: float = 440.0
    ct_hu_points: tuple[float, ...] = (-1024.0, -200.0, 200.0, 1500.0)
    ct_norm_points: tuple[float, ...] = (-1.0, -0.5, 0.3, 1.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PreprocessSettings:
        pre = config["preprocess"]
        return cls(
            image_size=int(pre["image_size"]),
            fov_mm=float(pre["fov_mm"]),
            ct_hu_points=tuple(map(float, pre["ct_hu_points"])),
            ct_norm_points=tuple(map(float, pre["ct_norm_points"])),
            mr_percentiles=tuple(map(float, pre["mr_percentiles"])),
        )


def normalise_ct(hu: np.ndarray, hu_points, norm_points) -> np.ndarray:
    """Map HU to [−1, 1] by the piecewise-linear map through the given points (clipped outside)."""
    return np.interp(hu, hu_points, norm_points).astype(np.float32)


def denormalise_ct(values: np.ndarray, hu_points, norm_points) -> np.ndarray:
    """Inverse of :func:`normalise_ct` on [norm_points[0], norm_points[-1]] (clipped outside)."""
    return np.interp(values, norm_points, hu_points).astype(np.float32)


@dataclass(frozen=True)
class SliceGrid:
    """The in-plane sampling grid of one subject's training slices.

    Pixel (row r, column c) of slice k samples voxel
    ``i = centre_i − (c − m)·step/spacing_x``, ``j = centre_j − (r − m)·step/spacing_y``
    with ``m = (size − 1)/2``: rows run anterior → posterior, columns from the
    patient's right to left (radiological convention).
    """

    size: int
    step_mm: float
    centre_ij: tuple[float, float]
    spacing_xy: tuple[float, float]

    def _factors(self) -> tuple[float, float, float]:
        m = (self.size - 1) / 2.0
        return m, self.step_mm / self.spacing_xy[0], self.step_mm / self.spacing_xy[1]

    def to_slices(self, data: np.ndarray, order: int = 1, cval: float = 0.0, antialias: bool = True) -> np.ndarray:
        """Resample a canonical ``(X, Y, Z)`` volume to slices ``(Z, size, size)``."""
        m, fx, fy = self._factors()
        source = np.asarray(data, dtype=np.float32)
        if antialias and order > 0 and (fx > 1 or fy > 1):
            sigma = (max(0.0, (fx - 1) / 2), max(0.0, (fy - 1) / 2), 0.0)
            source = ndimage.gaussian_filter(source, sigma=sigma, mode="nearest")
        zyx = source.transpose(2, 1, 0)  # (k, j, i)
        ci, cj = self.centre_ij
        out_shape = (zyx.shape[0], self.size, self.size)
        return ndimage.affine_transform(
            zyx,
            np.array([1.0, -fy, -fx]),
            offset=(0.0, cj + m * fy, ci + m * fx),
            output_shape=out_shape,
            order=order,
            mode="constant",
            cval=cval,
            prefilter=False,
        ).astype(np.float32)

    def volume_weights(self, shape_xy: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Linear-interpolation weights from slice pixels onto the subject's in-plane grid.

        Returns ``(wx, vx, wy, vy)``: ``wx`` (X, size) and ``wy`` (Y, size) map slice
        columns/rows to volume columns/rows; ``vx``/``vy`` flag volume positions inside the
        slice grid (outside it the value is a constant). The map is axis-aligned, so
        resampling is two small matrix products per slice: ``wy @ slice @ wx.T``.
        Same coordinates and edge rule as ``scipy.ndimage.affine_transform(order=1,
        mode="constant")``: no interpolation beyond the outermost pixel centres.
        """
        m, fx, fy = self._factors()
        ci, cj = self.centre_ij

        def axis(n: int, centre: float, factor: float) -> tuple[np.ndarray, np.ndarray]:
            pos = (-1.0 / factor) * np.arange(n, dtype=np.float64) + (m + centre / factor)
            valid = (pos >= 0.0) & (pos <= self.size - 1)
            lo = np.clip(np.floor(pos), 0, self.size - 1).astype(np.intp)
            hi = np.minimum(lo + 1, self.size - 1)
            frac = pos - lo
            weights = np.zeros((n, self.size), dtype=np.float64)
            rows = np.nonzero(valid)[0]
            np.add.at(weights, (rows, lo[rows]), 1.0 - frac[rows])
            np.add.at(weights, (rows, hi[rows]), frac[rows])
            return weights.astype(np.float32), valid

        wx, vx = axis(shape_xy[0], ci, fx)
        wy, vy = axis(shape_xy[1], cj, fy)
        return wx, vx, wy, vy

    def to_volume(self, slices: np.ndarray, shape_xy: tuple[int, int], order: int = 1, cval: float = 0.0) -> np.ndarray:
        """Resample slices ``(Z, size, size)`` back onto the subject's ``(X, Y, Z)`` grid (linear)."""
        if order != 1:
            raise ValueError("to_volume interpolates linearly (order=1) only")
        zyx = resample_planes(np.asarray(slices, dtype=np.float32), self.volume_weights(shape_xy), cval)  # (Z, Y, X)
        return np.ascontiguousarray(zyx.transpose(2, 1, 0), dtype=np.float32)


def resample_planes(planes: np.ndarray, weights: tuple[np.ndarray, ...], fill) -> np.ndarray:
    """Planes ``(..., size, size)`` → ``(..., Y, X)`` with :meth:`SliceGrid.volume_weights`;
    ``fill`` outside the slice grid (a scalar, or per leading index shaped ``(..., 1, 1)``)."""
    wx, vx, wy, vy = weights
    out = np.matmul(np.matmul(wy, planes), wx.T)
    out[..., ~vy, :] = fill
    out[..., :, ~vx] = fill
    return out


def _grid_for(mask: np.ndarray, spacing: tuple[float, float, float], settings: PreprocessSettings) -> SliceGrid:
    footprint = mask.any(axis=2)
    ii, jj = np.nonzero(footprint)
    centre = (float(ii.min() + ii.max()) / 2.0, float(jj.min() + jj.max()) / 2.0)
    return SliceGrid(settings.image_size, settings.fov_mm / settings.image_size, centre, (spacing[0], spacing[1]))


def preprocess_subject(files: SubjectFiles, settings: PreprocessSettings) -> dict[str, np.ndarray]:
    """Slices, normalised intensities and geometry of one subject (arrays for the cache)."""
    ct = read_volume(files.ct)
    mr = read_volume(files.mr)
    mask = read_volume(files.mask, dtype=np.uint8)
    grid = _grid_for(mask.data > 0, ct.spacing, settings)
    out: dict[str, np.ndarray] = {}
    ct_slices = grid.to_slices(ct.data, order=1, cval=settings.ct_hu_points[0])
    out["ct"] = normalise_ct(ct_slices, settings.ct_hu_points, settings.ct_norm_points)
    body = mr.data[mask.data > 0]
    lo, hi = np.percentile(body, settings.mr_percentiles)
    hi = hi if hi > lo else lo + 1.0
    mr_slices = grid.to_slices(mr.data, order=1, cval=float(lo))
    out["mr"] = np.clip(2.0 * (mr_slices - lo) / (hi - lo) - 1.0, -1.0, 1.0).astype(np.float32)
    out["mask"] = (grid.to_slices(mask.data.astype(np.float32), order=1, cval=0.0) >= 0.5).astype(np.uint8)
    if files.labels is not None:
        labels = read_volume(files.labels, dtype=np.float32)
        out["labels"] = grid.to_slices(labels.data, order=0, cval=0.0, antialias=False).astype(np.uint8)
    out.update(
        affine=ct.affine,
        shape=np.array(ct.data.shape),
        spacing=np.array(ct.spacing),
        disk_axcodes=np.array(ct.disk_axcodes),
        centre_ij=np.array(grid.centre_ij),
        step_mm=np.array(grid.step_mm),
        mr_range=np.array([lo, hi], dtype=np.float64),
        ct_hu_points=np.array(settings.ct_hu_points),
        ct_norm_points=np.array(settings.ct_norm_points),
    )
    return out


def save_preprocessed(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write the cache file atomically (uncompressed ``.npz``: fast to load)."""
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


@dataclass(frozen=True)
class PreprocessedSubject:
    """A subject's cached training slices ``(Z, H, W)`` and the geometry to undo the resampling."""

    mr: np.ndarray
    ct: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None
    grid: SliceGrid
    affine: np.ndarray
    shape: tuple[int, int, int]
    disk_axcodes: tuple[str, str, str]
    ct_hu_points: tuple[float, ...]
    ct_norm_points: tuple[float, ...]

    def ct_hu(self, normalised: np.ndarray) -> np.ndarray:
        """Normalised CT values back to HU."""
        return denormalise_ct(normalised, self.ct_hu_points, self.ct_norm_points)

    def ct_volume(self, normalised_ct_slices: np.ndarray) -> Volume:
        """Normalised CT slices ``(Z, H, W)`` at training resolution back to HU on the subject's CT
        grid: the inverse CT map, then linear resampling onto the original voxels, air (the map's
        lowest HU) outside the training field of view. What synthesis does with a generator's
        output, and what the ``reference_resampled`` score does with the real CT's own slices."""
        hu_slices = self.ct_hu(normalised_ct_slices)
        data = self.grid.to_volume(hu_slices, self.shape[:2], order=1, cval=float(self.ct_hu_points[0]))
        return Volume(data, self.affine, self.disk_axcodes)

    def body_slices(self, min_fraction: float) -> np.ndarray:
        """Indices of the slices whose body mask covers at least ``min_fraction`` of the slice."""
        fraction = self.mask.reshape(self.mask.shape[0], -1).mean(axis=1)
        return np.nonzero(fraction >= min_fraction)[0]


def context_stack(slices: np.ndarray, context: int, index: np.ndarray | None = None) -> np.ndarray:
    """Slices ``(Z, H, W)`` as 2.5D inputs ``(len(index), 2 context + 1, H, W)``: each slice of
    ``index`` (default: all, in order) with its ``context`` neighbours on either side as
    channels in slice order, the slice itself in the middle channel; beyond the first and
    last slice of the volume the edge slice is repeated."""
    if context < 0:
        raise ValueError(f"context must be >= 0; got {context}")
    index = np.arange(len(slices)) if index is None else np.asarray(index)
    neighbours = np.clip(index[:, None] + np.arange(-context, context + 1)[None, :], 0, len(slices) - 1)
    return np.ascontiguousarray(slices[neighbours])


def load_preprocessed(path: str | os.PathLike) -> PreprocessedSubject:
    """Load a cache file written by :func:`save_preprocessed`."""
    with np.load(path, allow_pickle=False) as z:
        spacing = z["spacing"]
        return PreprocessedSubject(
            mr=z["mr"],
            ct=z["ct"],
            mask=z["mask"],
            labels=z["labels"] if "labels" in z.files else None,
            grid=SliceGrid(
                int(z["mr"].shape[1]),
                float(z["step_mm"]),
                tuple(map(float, z["centre_ij"])),
                (float(spacing[0]), float(spacing[1])),
            ),
            affine=z["affine"],
            shape=tuple(int(v) for v in z["shape"]),
            disk_axcodes=tuple(str(v) for v in z["disk_axcodes"]),
            ct_hu_points=tuple(map(float, z["ct_hu_points"])),
            ct_norm_points=tuple(map(float, z["ct_norm_points"])),
        )


def preprocess_to_cache(files: SubjectFiles, settings: PreprocessSettings, out: str | os.PathLike) -> Path:
    """Preprocess one subject and write its cache file."""
    files = SubjectFiles(
        files.subject, Path(files.mr), Path(files.ct), Path(files.mask), Path(files.labels) if files.labels else None
    )
    return save_preprocessed(out, preprocess_subject(files, settings))
