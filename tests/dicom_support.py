"""DICOM series written as scanners write them (pydicom): unsigned 16-bit pixels with a rescale,
one file per slice, shuffled extension-less names, any (oblique) orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def _ds(values, digits: int = 6) -> list[str]:
    return [f"{float(v):.{digits}f}".rstrip("0").rstrip(".") or "0" for v in values]


def write_series(
    folder: Path,
    pixels: np.ndarray,
    lps_affine: np.ndarray,
    modality: str = "CT",
    intercept: float = -1024.0,
    slope: float = 1.0,
    seed: int = 0,
    series_uid: str | None = None,
    description: str = "test series",
    skip: tuple[int, ...] = (),
) -> str:
    """Write ``pixels`` (stored values, shape columns x rows x slices, i along the row direction) as one
    series whose voxel (i, j, k) lies at ``lps_affine @ (i, j, k, 1)``; return its SeriesInstanceUID."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    series_uid = series_uid or generate_uid(entropy_srcs=[str(folder), str(seed), modality])
    study_uid = generate_uid(entropy_srcs=[str(folder), "study"])
    spacing = np.linalg.norm(lps_affine[:3, :3], axis=0)
    row, col = lps_affine[:3, 0] / spacing[0], lps_affine[:3, 1] / spacing[1]
    names = rng.permutation(pixels.shape[2])
    for k in range(pixels.shape[2]):
        if k in skip:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CT_STORAGE if modality == "CT" else MR_STORAGE
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.Modality, ds.SeriesDescription, ds.PatientID = modality, description, "TEST"
        ds.InstanceNumber = int(rng.integers(1, 10_000))  # scanners' numbers say nothing about the position
        ds.ImagePositionPatient = _ds(lps_affine[:3, :3] @ [0, 0, k] + lps_affine[:3, 3])
        ds.ImageOrientationPatient = _ds([*row, *col], 8)
        ds.PixelSpacing = _ds([spacing[1], spacing[0]])
        ds.SliceThickness = _ds([spacing[2]])[0]
        ds.Rows, ds.Columns = pixels.shape[1], pixels.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = _ds([intercept])[0], _ds([slope], 8)[0]
        ds.PixelData = np.ascontiguousarray(pixels[:, :, k].T.astype(np.uint16)).tobytes()
        ds.save_as(folder / f"IM{names[k]:05d}x{rng.integers(1e6):06d}", enforce_file_format=True)
    return series_uid


def oblique_affine(spacing, origin, degrees=(12.0, -7.0, 20.0)) -> np.ndarray:
    """An LPS voxel-to-world affine with axes rotated by ``degrees`` about x, y and z."""
    ax, ay, az = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def image_to_series(folder: Path, image, modality: str, seed: int = 0) -> str:
    """Write a SimpleITK image as a scanner would: CT as unsigned 16-bit with intercept -1024 (HU rounded
    to integers), MR scaled into unsigned 16-bit with a slope; return the SeriesInstanceUID."""
    import SimpleITK as sitk

    values = np.asarray(sitk.GetArrayFromImage(image), dtype=np.float64).transpose(2, 1, 0)  # (i, j, k)
    if modality == "CT":
        intercept, slope = -1024.0, 1.0
    else:
        intercept, slope = 0.0, float(max(values.max(), 1e-6)) / 4000.0
        values = np.maximum(values, 0.0)
    stored = np.clip(np.rint((values - intercept) / slope), 0, 65535)
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return write_series(folder, stored, affine, modality, intercept, slope, seed=seed, description=f"{modality} test")


def moved_mr(mr_image, ct_image, degrees=(0.0, 4.0, 7.0), shift_mm=(9.0, -6.0, 5.0)):
    """The MR as acquired apart from its CT: rotated by ``degrees`` and shifted by ``shift_mm`` about the
    CT's centre, on a grid of its own (coarser in-plane, finer through-plane, a wider field of view)."""
    import SimpleITK as sitk

    size = np.asarray(ct_image.GetSize())
    spacing = np.asarray(ct_image.GetSpacing())
    centre = ct_image.TransformContinuousIndexToPhysicalPoint([float(v) for v in (size - 1) / 2])
    truth = sitk.Euler3DTransform(centre, *np.deg2rad(degrees), shift_mm)
    grid_spacing = spacing * np.array([1.25, 1.25, 0.75])
    grid_size = [int(np.ceil(n * s / g)) + 6 for n, s, g in zip(size, spacing, grid_spacing)]
    grid = sitk.Image(grid_size, sitk.sitkFloat32)
    grid.SetSpacing(tuple(float(v) for v in grid_spacing))
    grid.SetDirection(ct_image.GetDirection())
    shift = np.asarray(ct_image.GetDirection()).reshape(3, 3) @ (3 * grid_spacing)
    grid.SetOrigin(tuple(np.asarray(ct_image.GetOrigin()) - shift))
    return sitk.Resample(mr_image, grid, truth.GetInverse(), sitk.sitkLinear, 0.0)


def scanner_cohort(
    phantom_cohort: Path, out: Path, subjects: list[str], dicom: set[str], moved: set[str], no_mask: set[str]
) -> Path:
    """A sample sheet of ``subjects`` of a phantom cohort folder (``<subject>/{mr,ct,mask,labels}.nii.gz``):
    those in ``dicom`` as DICOM series (CT and MR), those in ``moved`` with the MR acquired apart
    (:func:`moved_mr`), those in ``no_mask`` without a mask; labels stay NIfTI files. Returns the sheet."""
    import SimpleITK as sitk

    from mr2ct.data.io import read_volume
    from mr2ct.data.registration import to_sitk

    rows = ["subject\tmr\tct\tmask\tlabels"]
    for n, subject in enumerate(subjects):
        source, folder = phantom_cohort / subject, out / subject
        folder.mkdir(parents=True, exist_ok=True)
        ct = to_sitk(read_volume(source / "ct.nii.gz"))
        mr = to_sitk(read_volume(source / "mr.nii.gz"))
        if subject in moved:
            mr = moved_mr(mr, ct)
        cells = {}
        for role, image in (("mr", mr), ("ct", ct)):
            if subject in dicom:
                image_to_series(folder / f"{role}_dicom", image, role.upper(), seed=n)
                cells[role] = f"{subject}/{role}_dicom"
            elif role == "mr" and subject in moved:
                sitk.WriteImage(image, str(folder / "mr.nii.gz"))
                cells[role] = f"{subject}/mr.nii.gz"
            else:
                (folder / f"{role}.nii.gz").write_bytes((source / f"{role}.nii.gz").read_bytes())
                cells[role] = f"{subject}/{role}.nii.gz"
        for role in ("mask", "labels"):
            if role == "mask" and subject in no_mask:
                cells[role] = ""
                continue
            (folder / f"{role}.nii.gz").write_bytes((source / f"{role}.nii.gz").read_bytes())
            cells[role] = f"{subject}/{role}.nii.gz"
        rows.append("\t".join([subject, *(cells[r] for r in ("mr", "ct", "mask", "labels"))]))
    (out / "labels.tsv").write_bytes((phantom_cohort / "labels.tsv").read_bytes())
    sheet = out / "sheet.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    return sheet
