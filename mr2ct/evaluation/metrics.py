"""Evaluation metrics for MR-to-CT synthesis.

Two families of metrics are provided, all operating on NumPy arrays:

Image metrics (synthetic CT vs. reference CT), argument order
``(reference_ct, synthetic_ct, mask)``:

* :func:`mae` -- mean absolute error in HU over the body mask;
* :func:`psnr` -- peak signal-to-noise ratio, SynthRAD2023 definition;
* :func:`ssim` -- masked 3D structural similarity, SynthRAD2023 definition;
* :func:`mae_boundary` -- MAE in a spacing-aware band around the bone surface.

Segmentation / surface metrics (predicted vs. reference binary masks):

* :func:`dice` -- Dice similarity coefficient;
* :func:`surface_distances` -- surfaces and distance transforms computed once
  per pair, giving both :func:`assd` and :func:`hd95`;
* :func:`assd`, :func:`hd95` -- in mm, numerically identical to
  ``medpy.metric.binary.assd`` / ``hd95`` of MedPy 0.5.2 (``connectivity=1``);
* :func:`segmentation_scores` -- per-label convenience wrapper.

Conventions
-----------
* Volumes are 3D arrays indexed in *array-axis order* (for NIfTI data loaded
  with nibabel and not reoriented that is usually ``(i, j, k)``; for
  SimpleITK's ``GetArrayFromImage`` it is ``(z, y, x)``).  Whatever the order,
  ``spacing`` must be given in the **same** order as the array axes, in mm.
* CT intensities are in Hounsfield units (HU).
* Masks are boolean arrays (any array is accepted and interpreted as
  ``array != 0``).
* All reductions are accumulated in float64.

Sources
-------
* SynthRAD2023 image metrics: E. M. C. Huijben et al., "Generating synthetic
  computed tomography for radiotherapy: SynthRAD2023 challenge report",
  Medical Image Analysis (2024), and the definitions in the challenge's public
  evaluation code (github.com/SynthRAD2023/metrics): intensities clipped to
  ``[-1024, 3000]`` HU, data range 4024 HU, SSIM map from scikit-image averaged
  over the mask after cropping the 3-voxel border affected by the 7-voxel
  window.
* SSIM itself: Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, "Image
  quality assessment: from error visibility to structural similarity",
  IEEE TIP 13(4), 2004 (computed by ``skimage.metrics.structural_similarity``).
* Surface distances: the surface-extraction and distance-transform recipe of
  MedPy (``medpy.metric.binary``, O. Maier), re-implemented here with a
  bounding-box crop; see :func:`surface_distances` for why the crop is exact.
* Dice: L. R. Dice, "Measures of the amount of ecologic association between
  species", Ecology 26(3), 1945.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

__all__ = [
    "HU_MIN",
    "HU_MAX",
    "DATA_RANGE_HU",
    "SSIM_BORDER_CROP",
    "BONE_PREFIXES",
    "BONE_THRESHOLD_HU",
    "SurfaceDistances",
    "bone_label_ids",
    "bone_mask",
    "mae",
    "psnr",
    "ssim",
    "bone_boundary_band",
    "mae_boundary",
    "dice",
    "surface_distances",
    "assd",
    "hd95",
    "segmentation_scores",
]

#: Lower clipping bound (HU) of the SynthRAD2023 PSNR/SSIM definitions.
HU_MIN: float = -1024.0
#: Upper clipping bound (HU) of the SynthRAD2023 PSNR/SSIM definitions.
HU_MAX: float = 3000.0
#: Data range (HU) used by the SynthRAD2023 PSNR/SSIM definitions: 3000 - (-1024).
DATA_RANGE_HU: float = HU_MAX - HU_MIN
#: Border (voxels) cropped from the SSIM map: (7 - 1) // 2 for skimage's 7-voxel window.
SSIM_BORDER_CROP: int = 3
#: Without bone labels, bone is the reference CT above this (cancellous bone is 150–350 HU, cortex > 1000).
BONE_THRESHOLD_HU: float = 200.0
#: Structures of a label table that are bone (names starting with these): their surface is "the bone surface".
BONE_PREFIXES: tuple[str, ...] = ("pelvis", "femur", "sacrum", "hip")


def bone_label_ids(label_table: dict[int, str] | None) -> list[int]:
    """The label ids whose structure is bone (names starting with :data:`BONE_PREFIXES`)."""
    return sorted(i for i, name in (label_table or {}).items() if name.lower().startswith(BONE_PREFIXES))


def bone_mask(ct_hu: npt.ArrayLike, labels: npt.ArrayLike | None, bone_ids: Sequence[int]) -> np.ndarray:
    """Bone of a reference CT: the union of the labels ``bone_ids`` (:func:`bone_label_ids`) when there
    are labels and bone ids, else the CT above :data:`BONE_THRESHOLD_HU`. The one definition of bone
    of the workflow (evaluation, validation during training)."""
    if labels is not None and len(bone_ids):
        return np.isin(np.asarray(labels), list(bone_ids))
    return np.asarray(ct_hu) > BONE_THRESHOLD_HU


#: Side of the uniform SSIM window (scikit-image default).
SSIM_WINDOW: int = 7

Spacing = Sequence[float]

# Relative tolerance applied to band_mm in bone_boundary_band.
_BAND_RTOL: float = 1e-9


# --------------------------------------------------------------------------- #
# input helpers
# --------------------------------------------------------------------------- #
def _as_bool(a: npt.ArrayLike, name: str) -> npt.NDArray[np.bool_]:
    arr = np.asarray(a)
    if arr.dtype != np.bool_:
        arr = arr != 0
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array with at least one dimension")
    return arr


def _check_image_inputs(
    reference_ct: npt.ArrayLike,
    synthetic_ct: npt.ArrayLike,
    mask: npt.ArrayLike,
) -> tuple[np.ndarray, np.ndarray, npt.NDArray[np.bool_]]:
    ref = np.asarray(reference_ct)
    pred = np.asarray(synthetic_ct)
    m = _as_bool(mask, "mask")
    if ref.shape != pred.shape or ref.shape != m.shape:
        raise ValueError(
            f"reference_ct, synthetic_ct and mask must have the same shape, got {ref.shape}, {pred.shape} and {m.shape}"
        )
    for name, arr in (("reference_ct", ref), ("synthetic_ct", pred)):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    return ref, pred, m


def _check_spacing(spacing: Spacing, ndim: int) -> tuple[float, ...]:
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim:
        raise ValueError(f"spacing must have {ndim} entries (one per array axis), got {len(sp)}")
    if not all(math.isfinite(s) and s > 0 for s in sp):
        raise ValueError(f"spacing entries must be finite and > 0, got {sp}")
    return sp


def _bbox(mask: npt.NDArray[np.bool_]) -> tuple[slice, ...] | None:
    """Tight bounding box of the True voxels as a tuple of slices (None if empty)."""
    slices: list[slice] = []
    for axis in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != axis)
        proj = np.any(mask, axis=other) if other else mask
        idx = np.flatnonzero(proj)
        if idx.size == 0:
            return None
        slices.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(slices)


# --------------------------------------------------------------------------- #
# image metrics
# --------------------------------------------------------------------------- #
def mae(
    reference_ct: npt.ArrayLike,
    synthetic_ct: npt.ArrayLike,
    mask: npt.ArrayLike,
) -> float:
    """Mean absolute error (HU) inside a mask.

    ``mean(|reference_ct - synthetic_ct|)`` over the voxels where ``mask`` is
    True, without any intensity clipping, accumulated in float64.

    Parameters
    ----------
    reference_ct, synthetic_ct:
        CT volumes in HU, same shape (typically 3D, array-axis order).
    mask:
        Boolean body mask of the same shape.

    Returns
    -------
    float
        MAE in HU; NaN (no warning) when the mask is empty.
    """
    ref, pred, m = _check_image_inputs(reference_ct, synthetic_ct, mask)
    n = int(np.count_nonzero(m))
    if n == 0:
        return float("nan")
    diff = ref[m].astype(np.float64) - pred[m].astype(np.float64)
    return float(np.abs(diff).sum(dtype=np.float64) / n)


def psnr(
    reference_ct: npt.ArrayLike,
    synthetic_ct: npt.ArrayLike,
    mask: npt.ArrayLike,
) -> float:
    """Masked peak signal-to-noise ratio (dB), SynthRAD2023 definition.

    Both volumes are clipped to ``[HU_MIN, HU_MAX] = [-1024, 3000]`` HU, the
    mean squared error is taken over the mask voxels and the data range is the
    fixed population range ``4024`` HU (Huijben et al. 2024; SynthRAD2023
    evaluation code, ``use_population_range=True``)::

        PSNR = 10 * log10(4024**2 / MSE)

    Parameters
    ----------
    reference_ct, synthetic_ct:
        CT volumes in HU, same shape (typically 3D, array-axis order).
    mask:
        Boolean body mask of the same shape.

    Returns
    -------
    float
        PSNR in dB; ``inf`` when the clipped images agree exactly on the mask
        (MSE = 0); NaN when the mask is empty.  No warnings are emitted.
    """
    ref, pred, m = _check_image_inputs(reference_ct, synthetic_ct, mask)
    n = int(np.count_nonzero(m))
    if n == 0:
        return float("nan")
    r = np.clip(ref[m].astype(np.float64), HU_MIN, HU_MAX)
    p = np.clip(pred[m].astype(np.float64), HU_MIN, HU_MAX)
    diff = r - p
    mse = float(np.dot(diff, diff) / n)
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(DATA_RANGE_HU**2 / mse))


def ssim(
    reference_ct: npt.ArrayLike,
    synthetic_ct: npt.ArrayLike,
    mask: npt.ArrayLike,
) -> float:
    """Masked structural similarity, SynthRAD2023 definition.

    Recipe (Huijben et al. 2024; SynthRAD2023 evaluation code):

    1. clip both volumes to ``[-1024, 3000]`` HU;
    2. set voxels outside ``mask`` to ``-1024`` in both;
    3. shift by ``+1024`` so intensities lie in ``[0, 4024]``;
    4. compute the full (3D for 3D input) SSIM map with
       ``skimage.metrics.structural_similarity(ref, pred, data_range=4024,
       full=True)`` and its defaults (uniform 7-voxel window, K1=0.01,
       K2=0.03, sample covariance);
    5. crop ``SSIM_BORDER_CROP = 3`` voxels from every border of the map and
       of the mask (the region where the window leaves the image) and average
       the map over the remaining mask voxels, in float64.

    Parameters
    ----------
    reference_ct, synthetic_ct:
        CT volumes in HU, same shape; every axis must have length >= 7
        (skimage raises ``ValueError`` otherwise).  All axes are treated as
        spatial (no channel axis).
    mask:
        Boolean body mask of the same shape.

    Returns
    -------
    float
        Mean SSIM in the cropped mask (dimensionless, <= 1); NaN when the
        cropped mask is empty.
    """
    from scipy.ndimage import uniform_filter

    ref, pred, m = _check_image_inputs(reference_ct, synthetic_ct, mask)
    c = SSIM_BORDER_CROP
    if min(m.shape) <= 2 * c:
        return float("nan")
    valid = np.zeros_like(m)
    inner = tuple(slice(c, -c) for _ in range(m.ndim))
    valid[inner] = m[inner]
    box = _bbox(valid)
    if box is None:
        return float("nan")
    # The map at a voxel depends only on its 7-voxel window, so computing it on
    # the bounding box of the evaluated voxels plus the window radius gives the
    # same values as the full-volume map (about 10x faster than skimage here).
    half = SSIM_WINDOW // 2
    region = tuple(slice(max(0, s.start - half), min(n, s.stop + half)) for s, n in zip(box, m.shape))
    r = np.where(m[region], np.clip(ref[region].astype(np.float64), HU_MIN, HU_MAX), HU_MIN) - HU_MIN
    p = np.where(m[region], np.clip(pred[region].astype(np.float64), HU_MIN, HU_MAX), HU_MIN) - HU_MIN
    # skimage.metrics.structural_similarity defaults: uniform window (mode
    # "reflect"), sample covariance, K1 = 0.01, K2 = 0.03
    ux, uy = uniform_filter(r, SSIM_WINDOW), uniform_filter(p, SSIM_WINDOW)
    uxx, uyy, uxy = (
        uniform_filter(r * r, SSIM_WINDOW),
        uniform_filter(p * p, SSIM_WINDOW),
        uniform_filter(r * p, SSIM_WINDOW),
    )
    n_window = SSIM_WINDOW**r.ndim
    cov_norm = n_window / (n_window - 1.0)
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    c1, c2 = (0.01 * DATA_RANGE_HU) ** 2, (0.03 * DATA_RANGE_HU) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    values = ssim_map[valid[region]]
    return float(values.sum(dtype=np.float64) / values.size)


def bone_boundary_band(
    bone: npt.ArrayLike,
    spacing: Spacing,
    band_mm: float = 2.0,
) -> npt.NDArray[np.bool_]:
    """Voxels within ``band_mm`` of a bone surface, on either side.

    The surface is the interface between bone and non-bone voxels.  A bone
    voxel belongs to the band when its Euclidean distance (mm, anisotropic
    ``spacing``) to the nearest non-bone voxel is ``<= band_mm``; a non-bone
    voxel belongs to the band when its distance to the nearest bone voxel is
    ``<= band_mm`` (with a relative tolerance of 1e-9, so that distances
    equal to ``band_mm`` in exact arithmetic are included regardless of
    floating-point rounding).  Distances are voxel-centre to voxel-centre, i.e. they are
    ``scipy.ndimage.distance_transform_edt(bone, sampling=spacing)`` and
    ``distance_transform_edt(~bone, sampling=spacing)``; the voxels directly
    on either side of the interface are at distance ``spacing[axis]``.

    Computed as two binary dilations with the ellipsoid (in mm) of all voxel
    offsets no longer than ``band_mm``: a non-bone voxel is within ``band_mm``
    of bone exactly when some offset in that ellipsoid reaches a bone voxel,
    and vice versa; voxels outside the array count as neither (as in the
    distance transforms). This gives the same band as thresholding the
    transforms, 10-20x faster for bands of a few voxels. Work is restricted to
    the bone bounding box enlarged by the ellipsoid's radius + 1 voxels per
    axis (clamped to the array), which holds every band voxel and every voxel
    they can reach.

    Parameters
    ----------
    bone:
        Boolean bone mask (any ndim, array-axis order).
    spacing:
        Voxel size in mm per array axis.
    band_mm:
        Half-width of the band in mm (``>= 0``).

    Returns
    -------
    numpy.ndarray of bool, same shape as ``bone``
        All False when ``bone`` is empty or fills the whole array (no surface).
    """
    b = _as_bool(bone, "bone")
    sp = _check_spacing(spacing, b.ndim)
    band_mm = float(band_mm)
    if not (math.isfinite(band_mm) and band_mm >= 0):
        raise ValueError(f"band_mm must be finite and >= 0, got {band_mm}")
    # Relative tolerance so that distances equal to band_mm in exact arithmetic
    # (e.g. 3 voxels of 0.7 mm vs. band_mm=2.1) are inside despite rounding.
    limit = band_mm * (1.0 + _BAND_RTOL)
    out = np.zeros(b.shape, dtype=bool)
    box = _bbox(b)
    if box is None:
        return out
    radius = [int(math.floor(limit / s)) for s in sp]
    offsets = np.meshgrid(*[np.arange(-r, r + 1) for r in radius], indexing="ij")
    ball = sum((o * s) ** 2 for o, s in zip(offsets, sp)) <= limit * limit
    box = tuple(slice(max(sl.start - r - 1, 0), min(sl.stop + r + 1, n)) for sl, r, n in zip(box, radius, b.shape))
    sub = b[box]
    if sub.all():
        # Only possible when the bone fills the whole array: no surface.
        return out
    near_bone = ndimage.binary_dilation(sub, structure=ball)
    near_other = ndimage.binary_dilation(~sub, structure=ball)
    out[box] = np.where(sub, near_other, near_bone)
    return out


def mae_boundary(
    reference_ct: npt.ArrayLike,
    synthetic_ct: npt.ArrayLike,
    mask: npt.ArrayLike,
    spacing: Spacing,
    bone: npt.ArrayLike | None = None,
    band_mm: float = 2.0,
    bone_threshold_hu: float = BONE_THRESHOLD_HU,
) -> float:
    """MAE (HU) in a band of +-``band_mm`` around the reference bone surface.

    The band is :func:`bone_boundary_band` of the bone mask (voxels whose
    centre is within ``band_mm`` mm, Euclidean with anisotropic ``spacing``,
    of a voxel of the other class), intersected with the body ``mask``; the
    MAE (no clipping, float64) is taken over that band.

    Parameters
    ----------
    reference_ct, synthetic_ct:
        CT volumes in HU, same shape (typically 3D, array-axis order).
    mask:
        Boolean body mask of the same shape.
    spacing:
        Voxel size in mm, one entry per array axis, in array-axis order.
    bone:
        Optional boolean bone mask of the same shape (e.g. the union of pelvis
        and femur labels).  When None, ``bone = reference_ct > bone_threshold_hu``
        (evaluated on the whole array; only the band is restricted to ``mask``).
    band_mm:
        Half-width of the band in mm.
    bone_threshold_hu:
        HU threshold used when ``bone`` is None.

    Returns
    -------
    float
        MAE in HU; NaN (no warning) when the band within the mask is empty
        (e.g. no bone, or bone filling the whole volume).
    """
    ref, pred, m = _check_image_inputs(reference_ct, synthetic_ct, mask)
    if bone is None:
        b = ref > bone_threshold_hu
    else:
        b = _as_bool(bone, "bone")
        if b.shape != ref.shape:
            raise ValueError(f"bone must have shape {ref.shape}, got {b.shape}")
    band = bone_boundary_band(b, spacing, band_mm)
    band &= m
    return mae(ref, pred, band)


# --------------------------------------------------------------------------- #
# segmentation / surface metrics
# --------------------------------------------------------------------------- #
def dice(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Dice similarity coefficient ``2|A & B| / (|A| + |B|)`` (Dice 1945).

    Parameters
    ----------
    a, b:
        Boolean masks of the same shape (any ndim).

    Returns
    -------
    float
        In ``[0, 1]``.  ``0.0`` when exactly one mask is empty; NaN when both
        are empty (the overlap is undefined).  (MedPy's ``dc`` returns 0.0 in
        the both-empty case.)  No warnings are emitted.
    """
    x = _as_bool(a, "a")
    y = _as_bool(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    total = int(np.count_nonzero(x)) + int(np.count_nonzero(y))
    if total == 0:
        return float("nan")
    inter = int(np.count_nonzero(x & y))
    return 2.0 * inter / total


def _surface(padded: npt.NDArray[np.bool_], connectivity: int) -> npt.NDArray[np.bool_]:
    """Surface of a mask padded by one False voxel on every side.

    Returns ``mask XOR erosion(mask)`` for the *unpadded* core, where the
    erosion uses ``generate_binary_structure(ndim, connectivity)`` and
    ``border_value=0`` (the MedPy / scipy default).
    """
    core = tuple(slice(1, -1) for _ in range(padded.ndim))
    m = padded[core]
    if connectivity == 1:
        # Face-neighbour erosion with explicit shifted views: a voxel survives
        # iff it and its 2*ndim face neighbours are set.  Equivalent to
        # ndimage.binary_erosion(m, generate_binary_structure(ndim, 1)) because
        # the 1-voxel False padding plays the role of border_value=0.
        eroded = m.copy()
        for axis in range(padded.ndim):
            for shift in (0, 2):
                sl = [slice(1, -1)] * padded.ndim
                sl[axis] = slice(shift, padded.shape[axis] - 2 + shift)
                eroded &= padded[tuple(sl)]
    else:
        structure = ndimage.generate_binary_structure(padded.ndim, connectivity)
        eroded = ndimage.binary_erosion(padded, structure=structure, iterations=1)[core]
    return m & ~eroded


@dataclass(frozen=True)
class SurfaceDistances:
    """Directed surface distances (mm) between two binary masks ``a`` and ``b``.

    Attributes
    ----------
    a_to_b:
        For every surface voxel of ``a`` (C order), the distance to the nearest
        surface voxel of ``b``.  This is MedPy's
        ``__surface_distances(result=a, reference=b)``.
    b_to_a:
        Same with the roles swapped.
    empty:
        True when ``a`` or ``b`` has no foreground voxel; all distance-based
        summaries are then NaN.
    """

    a_to_b: npt.NDArray[np.float64]
    b_to_a: npt.NDArray[np.float64]
    empty: bool = False

    def _pooled(self) -> npt.NDArray[np.float64]:
        return np.concatenate([self.a_to_b, self.b_to_a])

    @property
    def assd(self) -> float:
        """Average symmetric surface distance (mm), MedPy 0.5.2 definition.

        Mean of the *pooled* directed distances ``concat(a_to_b, b_to_a)``.
        NaN when either mask is empty.
        """
        if self.empty:
            return float("nan")
        return float(self._pooled().mean())

    @property
    def hd95(self) -> float:
        """95th-percentile Hausdorff distance (mm), MedPy 0.5.2 definition.

        ``numpy.percentile(concat(a_to_b, b_to_a), 95)`` (linear
        interpolation).  NaN when either mask is empty.
        """
        if self.empty:
            return float("nan")
        return float(np.percentile(self._pooled(), 95))

    @property
    def hd(self) -> float:
        """Hausdorff distance (mm): the largest directed distance.  NaN if empty."""
        if self.empty:
            return float("nan")
        return float(max(self.a_to_b.max(), self.b_to_a.max()))

    @property
    def assd_mean_of_directed(self) -> float:
        """``(mean(a_to_b) + mean(b_to_a)) / 2`` (MedPy <= 0.4 ``assd``).  NaN if empty."""
        if self.empty:
            return float("nan")
        return float((self.a_to_b.mean() + self.b_to_a.mean()) / 2.0)

    @property
    def hd95_max_directed(self) -> float:
        """``max(P95(a_to_b), P95(b_to_a))`` (MedPy <= 0.4 ``hd95``).  NaN if empty."""
        if self.empty:
            return float("nan")
        return float(max(np.percentile(self.a_to_b, 95), np.percentile(self.b_to_a, 95)))


def surface_distances(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    spacing: Spacing,
    connectivity: int = 1,
) -> SurfaceDistances:
    """Directed surface distances between two binary masks, computed once.

    Follows MedPy's ``medpy.metric.binary.__surface_distances`` exactly:
    surface = ``mask XOR binary_erosion(mask, generate_binary_structure(ndim,
    connectivity))`` (erosion with ``border_value=0``); the distances from the
    surface voxels of ``a`` to the surface of ``b`` are
    ``distance_transform_edt(~surface_b, sampling=spacing)[surface_a]`` and
    vice versa.  Both directions come out of a single surface extraction per
    mask, so asking for ASSD and HD95 costs 2 erosions + 2 nearest-neighbour
    searches instead of MedPy's 8 erosions + 4 EDTs.

    Speed-up by cropping (exact)
    ----------------------------
    Everything is computed on the bounding box ``B`` of ``a | b``:

    * Erosion: each mask is cropped to ``B`` and padded with one False voxel
      on every side.  All voxels outside ``B`` are False in both masks, and
      voxels outside the array count as False (``border_value=0``), so every
      voxel of ``B`` sees exactly the same neighbourhood (radius 1) as in the
      full array; the surfaces, which lie inside ``B``, are identical.
    * Distances: MedPy reads an EDT of the other mask's surface complement at
      this mask's surface voxels, i.e. the Euclidean distance (mm) from each
      surface voxel to the nearest surface voxel of the other mask. The same
      nearest-neighbour distances come from k-d trees of the surface voxel
      centres scaled by ``spacing`` (exact, not approximate, queries), which
      costs time in the number of surface voxels instead of the volume of
      ``B`` (about 3x faster on the phantom's label maps, equal values).

    Parameters
    ----------
    a, b:
        Binary masks of the same shape (any ndim, array-axis order); ``a``
        plays MedPy's ``result``, ``b`` its ``reference``.
    spacing:
        Voxel size in mm per array axis, in array-axis order.
    connectivity:
        Connectivity of the erosion structuring element (1 = face neighbours,
        the MedPy default; up to ``ndim``).

    Returns
    -------
    SurfaceDistances
        With ``empty=True`` and empty distance arrays when either mask is
        empty (no exception, no warning).
    """
    x = _as_bool(a, "a")
    y = _as_bool(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must have the same shape, got {x.shape} and {y.shape}")
    sp = _check_spacing(spacing, x.ndim)
    if not (1 <= int(connectivity) <= x.ndim):
        raise ValueError(f"connectivity must be in [1, {x.ndim}], got {connectivity}")
    empty_arr = np.zeros(0, dtype=np.float64)
    if not x.any() or not y.any():
        return SurfaceDistances(empty_arr, empty_arr.copy(), empty=True)

    box = _bbox(x | y)
    assert box is not None
    xp = np.pad(x[box], 1, mode="constant", constant_values=False)
    yp = np.pad(y[box], 1, mode="constant", constant_values=False)
    sx = _surface(xp, int(connectivity))
    sy = _surface(yp, int(connectivity))
    from scipy.spatial import cKDTree

    px = np.argwhere(sx) * np.asarray(sp)  # C order, as boolean indexing of a transform
    py = np.argwhere(sy) * np.asarray(sp)
    a_to_b = cKDTree(py).query(px)[0].astype(np.float64, copy=False)
    b_to_a = cKDTree(px).query(py)[0].astype(np.float64, copy=False)
    return SurfaceDistances(a_to_b, b_to_a)


def assd(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    spacing: Spacing,
    connectivity: int = 1,
) -> float:
    """Average symmetric surface distance (mm).

    Equal to ``medpy.metric.binary.assd(a, b, voxelspacing=spacing,
    connectivity=connectivity)`` of MedPy 0.5.2: the mean over the pooled
    directed surface distances of both directions (see
    :class:`SurfaceDistances`).  ``a``/``b`` are binary masks of the same
    shape, ``spacing`` in mm in array-axis order.  NaN (no exception, no
    warning) when either mask is empty.
    """
    return surface_distances(a, b, spacing, connectivity).assd


def hd95(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    spacing: Spacing,
    connectivity: int = 1,
) -> float:
    """95th-percentile Hausdorff distance (mm).

    Equal to ``medpy.metric.binary.hd95(a, b, voxelspacing=spacing,
    connectivity=connectivity)`` of MedPy 0.5.2: the 95th percentile (linear
    interpolation) of the pooled directed surface distances of both
    directions.  ``a``/``b`` are binary masks of the same shape, ``spacing``
    in mm in array-axis order.  NaN (no exception, no warning) when either
    mask is empty.
    """
    return surface_distances(a, b, spacing, connectivity).hd95


def segmentation_scores(
    pred_labels: npt.ArrayLike,
    ref_labels: npt.ArrayLike,
    spacing: Spacing,
    label_ids: Iterable[int],
    connectivity: int = 1,
) -> list[dict[str, Any]]:
    """Per-structure Dice, ASSD and HD95 for two label maps.

    Parameters
    ----------
    pred_labels, ref_labels:
        Integer label volumes of the same shape (array-axis order).
    spacing:
        Voxel size in mm per array axis, in array-axis order.
    label_ids:
        Labels to evaluate (e.g. ``[1, 2, 3]`` for pelvis, left and right
        femur); each yields the masks ``pred_labels == id`` and
        ``ref_labels == id``.

    Returns
    -------
    list of dict
        One dict per label, in the order given, with keys ``label`` (int),
        ``dice``, ``assd_mm``, ``hd95_mm`` (floats; see :func:`dice` and
        :func:`surface_distances` for the NaN conventions), ``n_pred`` and
        ``n_ref`` (voxel counts).
    """
    pred = np.asarray(pred_labels)
    ref = np.asarray(ref_labels)
    if pred.shape != ref.shape:
        raise ValueError(f"pred_labels and ref_labels must have the same shape, got {pred.shape} and {ref.shape}")
    sp = _check_spacing(spacing, pred.ndim)
    rows: list[dict[str, Any]] = []
    for label in label_ids:
        p = pred == label
        r = ref == label
        sd = surface_distances(p, r, sp, connectivity)
        rows.append(
            {
                "label": int(label),
                "dice": dice(p, r),
                "assd_mm": sd.assd,
                "hd95_mm": sd.hd95,
                "n_pred": int(np.count_nonzero(p)),
                "n_ref": int(np.count_nonzero(r)),
            }
        )
    return rows
