"""Registration of MR to CT on known motions, and body masks derived from the CT (package API and CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from mr2ct.data.phantom import PhantomSettings, render_subject, sample_subject

#: a 2 mm grid: fine enough that a sub-millimetre error is a fraction of a voxel, small enough for seconds per run
GRID = PhantomSettings(matrix=(224, 160), spacing=(2.0, 2.0, 3.0))


@pytest.fixture(scope="module")
def subject():
    return render_subject(sample_subject(7, 0), GRID, 0)


@pytest.fixture(scope="module")
def tiny_subject():
    """The tiny workflow's grid (4 x 4 x 6 mm): for what is not about accuracy."""
    return render_subject(sample_subject(7, 1), PhantomSettings(matrix=(112, 80), spacing=(4.0, 4.0, 6.0)), 1)


def _landmarks(volumes, ct_image):
    """Centres of every labelled structure and of the body, in LPS mm (as ITK reads points)."""
    from scipy import ndimage

    labels = volumes["labels"].data.astype(int)
    centres = ndimage.center_of_mass(labels > 0, labels, [i for i in np.unique(labels) if i > 0])
    centres.append(ndimage.center_of_mass(volumes["mask"].data > 0))
    return [ct_image.TransformContinuousIndexToPhysicalPoint([float(v) for v in c]) for c in centres]


def _moved(mr_image, ct_image, transform):
    """The MR moved by ``transform`` (CT points to MR points) on another grid: 1.7 x 1.7 x 2.5 mm, a larger
    field of view, shifted origin."""
    import SimpleITK as sitk

    grid = sitk.Image([290, 210, 110], sitk.sitkFloat32)
    grid.SetSpacing((1.7, 1.7, 2.5))
    grid.SetDirection(ct_image.GetDirection())
    shift = np.asarray(ct_image.GetDirection()).reshape(3, 3) @ [45.0, 35.0, 40.0]
    grid.SetOrigin(tuple(np.asarray(ct_image.GetOrigin()) - shift))
    return sitk.Resample(mr_image, grid, transform.GetInverse(), sitk.sitkLinear, 0.0)


@pytest.mark.parametrize(
    ("degrees", "shift_mm"), [((3.0, -6.0, 10.0), (-20.0, 12.0, 15.0)), ((-10.0, 4.0, -5.0), (15.0, -20.0, -8.0))]
)
def test_a_known_rigid_motion_on_another_grid_is_recovered_within_a_millimetre(subject, degrees, shift_mm):
    import SimpleITK as sitk

    from mr2ct.data.registration import register_mr_to_ct, to_sitk

    ct, mr = to_sitk(subject["ct"]), to_sitk(subject["mr"])
    points = _landmarks(subject, ct)
    truth = sitk.Euler3DTransform(tuple(np.mean(points, axis=0)), *np.deg2rad(degrees), shift_mm)
    found, summary = register_mr_to_ct(ct, _moved(mr, ct, truth), "rigid", seed=3)
    errors = [np.linalg.norm(np.subtract(found.TransformPoint(p), truth.TransformPoint(p))) for p in points]
    # within a millimetre (root mean square over the landmarks), no landmark off by more than 1.5 mm (3/4 voxel)
    assert np.sqrt(np.mean(np.square(errors))) < 1.0 and max(errors) < 1.5, (np.round(errors, 2), summary)
    # without registration the landmarks are centimetres off: the test measures a real correction
    assert min(np.linalg.norm(np.subtract(p, truth.TransformPoint(p))) for p in points) > 5.0


def test_registration_writes_the_mr_on_the_ct_grid_deterministically_and_the_cli_does_the_same(tiny_subject, tmp_path):
    import SimpleITK as sitk

    from mr2ct.cli import main
    from mr2ct.data.io import read_volume, write_volume
    from mr2ct.data.registration import register_subject, to_sitk

    ct_image, mr_image = to_sitk(tiny_subject["ct"]), to_sitk(tiny_subject["mr"])
    truth = sitk.Euler3DTransform((0.0, 0.0, float(np.mean(ct_image.GetOrigin()))), *np.deg2rad([0, 0, 6]), (8, -5, 4))
    moved = sitk.Resample(mr_image, ct_image, truth.GetInverse(), sitk.sitkLinear, 0.0)
    write_volume(tmp_path / "ct.nii.gz", tiny_subject["ct"], np.int16)
    sitk.WriteImage(moved, str(tmp_path / "mr.nii.gz"))
    outs = []
    for run in ("a", "b"):
        out = tmp_path / run
        row = register_subject(
            tmp_path / "mr.nii.gz", tmp_path / "ct.nii.gz", "affine",
            out / "mr.nii.gz", out / "transform.tfm", out / "row.tsv", subject="s1", seed=5,
        )  # fmt: skip
        outs.append(out)
    assert row["method"] == "affine" and row["metric"] < -0.5
    first, second = (read_volume(o / "mr.nii.gz") for o in outs)
    np.testing.assert_array_equal(first.data, second.data)
    assert (outs[0] / "transform.tfm").read_bytes() == (outs[1] / "transform.tfm").read_bytes()
    assert first.data.shape == tiny_subject["ct"].data.shape
    np.testing.assert_allclose(first.affine, tiny_subject["ct"].affine, atol=1e-4)
    body = tiny_subject["mask"].data > 0
    ncc = np.corrcoef(first.data[body], tiny_subject["mr"].data[body])[0, 1]
    assert ncc > 0.9, ncc
    assert sitk.ReadTransform(str(outs[0] / "transform.tfm")).GetDimension() == 3
    assert main(["register", str(tmp_path / "mr.nii.gz"), str(tmp_path / "ct.nii.gz"), "--out", str(tmp_path / "c"),
                 "--method", "affine", "--seed", "5"]) == 0  # fmt: skip
    np.testing.assert_array_equal(read_volume(tmp_path / "c/mr.nii.gz").data, first.data)


def test_the_body_mask_derived_from_the_ct_matches_the_drawn_one_with_gas_filled(subject, tmp_path):
    from mr2ct.cli import main
    from mr2ct.data.body_mask import body_mask
    from mr2ct.data.io import read_volume, write_volume

    truth = subject["mask"].data > 0
    ct = subject["ct"].data.copy()
    ct[110:114, 70:74, 20:23] = -1000.0  # gas inside the body: a hole to fill
    derived = body_mask(ct)
    dice = 2 * (derived & truth).sum() / (derived.sum() + truth.sum())
    assert dice > 0.98 and derived[111, 71, 21]
    ct[2:6, 2:6, :] = 200.0  # a stray object (the couch) apart from the body is dropped
    assert not body_mask(ct)[3, 3, 5]
    write_volume(tmp_path / "ct.nii.gz", subject["ct"].with_data(ct), np.int16)
    assert main(["body-mask", str(tmp_path / "ct.nii.gz"), str(tmp_path / "mask.nii.gz")]) == 0
    written = read_volume(tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(written.data > 0, body_mask(ct))
    np.testing.assert_allclose(written.affine, subject["ct"].affine)
