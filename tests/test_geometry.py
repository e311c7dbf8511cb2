"""Geometry through the whole chain on real on-disk orientations: a marker on the patient's left
stays on the left after preprocessing, synthesis and segmentation, in RAS, LPS and oblique files.

The volumes are written and read back with nibabel directly (on-disk voxel order and affine),
so the package's own reader is not the judge of its writer. A "perfect generator" (the cached
real-CT slices) and a "threshold segmenter" (a fixed network) stand in for trained networks:
what is tested is where their output lands, not what they learnt.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mr2ct.data.cohort import SubjectFiles
from mr2ct.data.io import Volume, read_volume, write_volume
from mr2ct.data.preprocess import PreprocessSettings, SliceGrid, load_preprocessed, preprocess_to_cache
from mr2ct.models.synthesis import synthetic_volume
from mr2ct.segmentation.segmenter import segment_ct

MARKER_HU = 1500.0
MARKER_LABEL = 5


def _disk(path):
    image = nib.load(str(path))
    return np.asarray(image.dataobj, dtype=np.float32), image.affine


def _rotation_z(degrees: float, centre: np.ndarray) -> np.ndarray:
    t = np.deg2rad(degrees)
    rot = np.eye(4)
    rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    shift, back = np.eye(4), np.eye(4)
    shift[:3, 3], back[:3, 3] = -centre, centre
    return back @ rot @ shift


def _to_disk(data: np.ndarray, affine: np.ndarray, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """A canonical RAS array stored as ``orientation`` on disk: the same physical image (RAS, LPS) or
    the same voxels under a 10° in-plane rotation of the scanner frame (oblique)."""
    if orientation == "RAS":
        return data, affine
    if orientation == "LPS":
        nx, ny = data.shape[:2]
        flip = np.array([[-1, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
        return np.ascontiguousarray(data[::-1, ::-1]), affine @ flip
    centre = (affine @ np.array([*(np.array(data.shape) - 1) / 2.0, 1.0]))[:3]
    return data, _rotation_z(10.0, centre) @ affine


def _save(path, data, affine, dtype):
    image = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    image.set_sform(affine, code=1)
    image.set_qform(affine, code=1)
    nib.save(image, str(path))


def _marker_box(ct: np.ndarray, mask: np.ndarray) -> tuple[slice, slice, slice]:
    """A 8 x 8 x 4 voxel box in soft tissue on the patient's left (high RAS x) whose mirror image
    about the body's mid-sagittal plane is soft tissue too (so the mirror would be visible)."""
    xs = np.nonzero(mask.any(axis=(1, 2)))[0]
    mid = (xs.min() + xs.max()) / 2.0
    z0 = ct.shape[2] // 2 - 2
    for x0 in range(int(mid) + 6, xs.max() - 10):
        for y0 in range(4, ct.shape[1] - 12):
            box = (slice(x0, x0 + 8), slice(y0, y0 + 8), slice(z0, z0 + 4))
            mx0 = int(round(2 * mid - (x0 + 7)))
            mirror = (slice(mx0, mx0 + 8), box[1], box[2])
            if all(mask[b].all() and np.abs(ct[b]).max() < 150 for b in (box, mirror)):
                return box
    raise AssertionError("no soft-tissue box with a soft-tissue mirror image in the test subject")


def _mirror(box: tuple[slice, slice, slice], mask: np.ndarray) -> tuple[slice, slice, slice]:
    xs = np.nonzero(mask.any(axis=(1, 2)))[0]
    mid = (xs.min() + xs.max()) / 2.0
    mx0 = int(round(2 * mid - (box[0].stop - 1)))
    return (slice(mx0, mx0 + 8), box[1], box[2])


class _ThresholdSegmenter(torch.nn.Module):
    """Logits of 13 classes: MARKER_LABEL where the normalised CT is near its top (> 0.9)."""

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 13, *x.shape[2:])
        logits[:, MARKER_LABEL] = (x[:, 0] - 0.9) * 100.0
        return logits


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
def test_a_left_sided_marker_stays_left_through_preprocessing_synthesis_and_segmentation(
    tiny_cohort, tmp_path, orientation
):
    source = tiny_cohort / "phantom002"
    volumes = {m: _disk(source / f"{m}.nii.gz") for m in ("mr", "ct", "mask", "labels")}
    affine = volumes["ct"][1]
    assert nib.aff2axcodes(affine) == ("R", "A", "S")  # the phantom is written in RAS: canonical arrays
    ct, mask = volumes["ct"][0], volumes["mask"][0] > 0
    box = _marker_box(ct, mask)
    mirror = _mirror(box, mask)
    ct = ct.copy()
    ct[box] = MARKER_HU
    mr = volumes["mr"][0].copy()
    mr[box] = mr[mask].max()
    marker = np.zeros(ct.shape, bool)
    marker[box] = True
    mirrored = np.zeros(ct.shape, bool)
    mirrored[mirror] = True

    files = {}
    disk = {}
    for name, data, dtype in (
        ("mr", mr, np.float32),
        ("ct", ct, np.int16),
        ("mask", mask, np.uint8),
        ("labels", volumes["labels"][0], np.uint8),
        ("marker", marker, np.uint8),
        ("mirrored", mirrored, np.uint8),
    ):
        on_disk, disk_affine = _to_disk(data, affine, orientation)
        files[name] = tmp_path / f"{name}.nii.gz"
        _save(files[name], on_disk, disk_affine, dtype)
        disk[name] = on_disk
    assert (
        nib.aff2axcodes(disk_affine)
        == {"RAS": ("R", "A", "S"), "LPS": ("L", "P", "S"), "oblique": ("R", "A", "S")}[orientation]
    )

    cache_path = preprocess_to_cache(
        SubjectFiles("phantom002", files["mr"], files["ct"], files["mask"], files["labels"]),
        PreprocessSettings(image_size=64),
        tmp_path / "phantom002.npz",
    )
    cache = load_preprocessed(cache_path)

    # synthesis: a perfect generator returns the real-CT slices; written back on the CT's grid
    written = write_volume(tmp_path / "synthetic.nii.gz", synthetic_volume(cache, cache.ct), np.int16)
    synthetic = nib.load(str(written))
    np.testing.assert_allclose(synthetic.affine, disk_affine, atol=1e-4)
    assert nib.aff2axcodes(synthetic.affine) == nib.aff2axcodes(disk_affine)
    values = np.asarray(synthetic.dataobj, dtype=np.float32)
    on_marker = values[disk["marker"] > 0].mean()
    on_mirror = values[disk["mirrored"] > 0].mean()
    assert on_marker > 900 and on_mirror < 300, (on_marker, on_mirror)
    body = disk["mask"] > 0
    assert np.corrcoef(values[body], disk["ct"][body])[0, 1] > 0.8  # and the rest of the body lines up too

    # segmentation of the real CT (read in canonical order by the workflow) lands on the marker
    canonical = read_volume(files["ct"])
    labels = segment_ct(_ThresholdSegmenter(), canonical.data, cache)
    out = write_volume(
        tmp_path / "labels_out.nii.gz", Volume(labels, canonical.affine, canonical.disk_axcodes), np.uint8
    )
    predicted = np.asarray(nib.load(str(out)).dataobj) == MARKER_LABEL
    assert predicted[disk["marker"] > 0].mean() > 0.6
    assert predicted[disk["mirrored"] > 0].mean() < 0.05


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([16, 24, 32]),
    step=st.floats(2.0, 8.0),
    spacing=st.tuples(st.floats(1.0, 4.0), st.floats(1.0, 4.0)),
    centre=st.tuples(st.floats(-3.0, 3.0), st.floats(-3.0, 3.0)),
    slope=st.tuples(st.floats(-5.0, 5.0), st.floats(-5.0, 5.0), st.floats(-5.0, 5.0)),
)
def test_slices_and_back_reproduce_a_linear_volume(size, step, spacing, centre, slope):
    """to_volume(to_slices(x)) = x wherever the slice grid covers the volume, for any linear x
    (linear interpolation and the anti-aliasing blur are exact on linear images): a flipped,
    shifted or rescaled axis in either direction would break it."""

    shape = (40, 36, 3)
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    volume = (slope[0] * i + slope[1] * j + slope[2] * k + 100.0).astype(np.float32)
    grid = SliceGrid(size, step, (shape[0] / 2 + centre[0], shape[1] / 2 + centre[1]), spacing)
    back = grid.to_volume(grid.to_slices(volume), shape[:2], cval=np.nan)
    # the anti-aliasing blur (sigma (f - 1) / 2, truncated at 4 sigma) must not reach the volume's border
    fx, fy = step / spacing[0], step / spacing[1]
    margin_x, margin_y = int(np.ceil(2 * max(fx - 1, 0))) + 2, int(np.ceil(2 * max(fy - 1, 0))) + 2
    inner = np.zeros(shape, bool)
    inner[margin_x : shape[0] - margin_x, margin_y : shape[1] - margin_y] = True
    covered = inner & np.isfinite(back)
    assert covered.sum() > 50
    np.testing.assert_allclose(back[covered], volume[covered], rtol=0, atol=1e-4 * (100 + np.abs(slope).sum() * 40))


def test_preprocessing_centres_the_body_keeps_anisotropic_pixels_and_normalises_within_the_body(tmp_path):
    """A box-shaped body off the volume centre, 1.0 x 1.5 mm pixels, an MR ramp inside it: the field of
    view is centred on the body, the body keeps its size in mm on the slices, the MR range is that of
    the body's voxels, and the CT outside the volume is air."""
    shape, spacing = (60, 40, 5), (1.0, 1.5, 3.0)
    affine = np.diag([*spacing, 1.0])
    body = np.zeros(shape, dtype=np.uint8)
    body[10:41, 5:31, :] = 1  # 31 x 26 voxels = 31 x 39 mm
    ramp = np.linspace(100.0, 400.0, 31)[:, None, None] * np.ones((1, 26, 5))
    mr = np.zeros(shape, dtype=np.float32)
    mr[10:41, 5:31, :] = ramp
    mr[24:28, 15:19, 2] = 5000.0  # a bright spot of 16 voxels (< 0.5 % of the body): above the range, clipped
    ct = np.where(body > 0, 40.0, -1000.0).astype(np.float32)
    paths = {}
    for name, data, dtype in (("mr", mr, np.float32), ("ct", ct, np.int16), ("mask", body, np.uint8)):
        paths[name] = write_volume(tmp_path / f"{name}.nii.gz", Volume(data, affine), dtype)
    settings = PreprocessSettings(image_size=32, fov_mm=80.0)
    path = preprocess_to_cache(
        SubjectFiles("s1", paths["mr"], paths["ct"], paths["mask"]), settings, tmp_path / "s1.npz"
    )
    cache = load_preprocessed(path)
    np.testing.assert_allclose(cache.grid.centre_ij, (25.0, 17.5))  # the body's bounding-box centre (voxels)
    step = 80.0 / 32
    mask = cache.mask[2].astype(bool)
    extents = sorted((mask.any(axis=0).sum() * step, mask.any(axis=1).sum() * step))
    np.testing.assert_allclose(extents, [31.0, 39.0], atol=step)  # the body's size in mm on both axes
    lo, hi = np.percentile(mr[body > 0], settings.mr_percentiles)
    with np.load(path) as arrays:
        np.testing.assert_allclose(arrays["mr_range"], (lo, hi), rtol=1e-6)
    inner = cache.mr[2][mask]
    assert inner.min() >= -1.0 and inner.max() == 1.0 and (inner == 1.0).sum() >= 2  # the spot, clipped
    assert -0.3 < float(np.median(inner)) < 0.3  # a symmetric ramp maps around 0, not onto a bound
    assert (inner < -0.8).mean() > 0.05 and (inner > 0.8).mean() > 0.05
    # corners of the 80 mm field of view lie outside the 60 x 60 mm volume: air, the lowest CT point
    assert cache.ct[2][0, 0] == settings.ct_norm_points[0] and cache.ct[2][-1, -1] == settings.ct_norm_points[0]


def test_slice_pixels_sample_the_voxels_the_slice_grid_documents():
    """SliceGrid's formula checked on a linear volume (linear interpolation and the anti-aliasing
    Gaussian keep a linear function away from the borders): pixel (r, c) of a slice samples voxel
    i = centre_i − (c − m)·step/spacing_x, j = centre_j − (r − m)·step/spacing_y, m = (size − 1)/2."""
    shape, size, step, centre, spacing = (60, 50, 3), 16, 3.0, (29.3, 24.6), (1.5, 2.0)
    i, j, _ = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    slices = SliceGrid(size, step, centre, spacing).to_slices(i + 1000.0 * j)
    m = (size - 1) / 2
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    expected = centre[0] - (c - m) * step / spacing[0] + 1000.0 * (centre[1] - (r - m) * step / spacing[1])
    for k in range(shape[2]):
        np.testing.assert_allclose(slices[k], expected, atol=0.05)
