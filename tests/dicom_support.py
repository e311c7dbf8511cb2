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
