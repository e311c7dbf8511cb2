"""DICOM series as cohort inputs: find the series of a folder, check their geometry, convert one to NIfTI.

A sample-sheet cell may name a folder holding one DICOM series (``folder``) or a
folder and one of its series (``folder#<SeriesInstanceUID>``). The headers are
read with SimpleITK (ITK's GDCM), so every transfer syntax GDCM decodes is read,
compressed ones included. What is checked, with the folder named in each error:

* the folder holds DICOM images of one series, or the cell names one of them
  (several are listed with their SeriesInstanceUID, description and size);
* every slice has the same orientation (ImageOrientationPatient), matrix and
  pixel spacing; multi-frame (enhanced) files are refused;
* the slices, sorted by their position along the slice normal
  (ImagePositionPatient, never by file name), are evenly spaced: a duplicate
  position, a gap (missing slices) or an irregular step is refused.

The volume's geometry comes from these tags, not from a reader's guess: origin
= the first slice's ImagePositionPatient, axes = the row and column directions
and their normal (oblique orientations kept), spacing = PixelSpacing and the
slice step. Voxel values are physical: the stored values times RescaleSlope
plus RescaleIntercept (Hounsfield units for CT).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mr2ct.data.io import InputError, Volume, volume_from_affine, write_volume

__all__ = ["SeriesInfo", "convert_series", "find_series", "inspect_series", "read_series", "split_series_spec"]

#: DICOM tags read from each file (group|element, as SimpleITK names them)
TAGS = {
    "series_uid": "0020|000e",
    "description": "0008|103e",
    "modality": "0008|0060",
    "position": "0020|0032",
    "orientation": "0020|0037",
    "pixel_spacing": "0028|0030",
    "rows": "0028|0010",
    "columns": "0028|0011",
    "frames": "0028|0008",
}
#: two slice orientations agree when their direction cosines differ by less than this
ORIENTATION_TOLERANCE = 1e-4
#: slice steps agree when they differ by less than this share of the median step (or 0.01 mm)
STEP_TOLERANCE = 0.01


@dataclass(frozen=True)
class SliceHeader:
    path: Path
    position: np.ndarray  # LPS mm
    orientation: np.ndarray  # row direction (3), column direction (3)
    pixel_spacing: tuple[float, float]  # between rows, between columns (mm)
    shape: tuple[int, int]  # rows, columns


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a folder: its id, description, modality and files (unsorted), with the tags
    of :data:`TAGS` of each file as read once by :func:`find_series`."""

    uid: str
    description: str
    modality: str
    files: tuple[Path, ...]
    tags: tuple[dict[str, str], ...] = field(default=(), compare=False, repr=False)


def split_series_spec(value: str) -> tuple[str, str | None]:
    """``folder#uid`` -> (folder, uid); a value without ``#`` names the folder only."""
    if "#" in value:
        folder, uid = value.rsplit("#", 1)
        return folder, uid.strip() or None
    return value, None


def _sitk():
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    return sitk


def _read_header(path: Path):
    sitk = _sitk()
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("GDCMImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None  # not a DICOM image (DICOMDIR, a report, a stray file)
    return reader


def _tag(reader, key: str) -> str:
    tag = TAGS[key]
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def _numbers(text: str, count: int, what: str, path: Path) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.replace(",", "\\").split("\\") if v.strip()], dtype=np.float64)
    except ValueError:
        values = np.array([])
    if values.size != count or not np.isfinite(values).all():
        raise InputError(f"{path}: DICOM tag {what} is missing or malformed ('{text}')")
    return values


def find_series(folder: str | os.PathLike) -> list[SeriesInfo]:
    """The DICOM image series in ``folder`` (files directly in it, any names), sorted by UID."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: DICOM folder not found")
    groups: dict[str, list[tuple[Path, dict[str, str]]]] = {}
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        reader = _read_header(path)
        if reader is None:
            continue
        tags = {key: _tag(reader, key) for key in TAGS}
        groups.setdefault(tags["series_uid"], []).append((path, tags))
    return [
        SeriesInfo(uid, items[0][1]["description"], items[0][1]["modality"], *map(tuple, zip(*items)))
        for uid, items in sorted(groups.items())
    ]


def _choose(folder: Path, uid: str | None) -> SeriesInfo:
    series = find_series(folder)
    if not series:
        raise InputError(f"{folder}: the folder holds no DICOM image files")
    if uid is not None:
        chosen = [s for s in series if s.uid == uid]
        if not chosen:
            listed = ", ".join(s.uid for s in series)
            raise InputError(f"{folder}: no series with SeriesInstanceUID {uid} (the folder holds {listed})")
        return chosen[0]
    if len(series) > 1:
        listed = "\n  ".join(
            f"{s.uid}  {s.modality or '?'}  '{s.description or 'no description'}'  {len(s.files)} file(s)"
            for s in series
        )
        raise InputError(
            f"{folder}: the folder holds {len(series)} DICOM series; name one as <folder>#<SeriesInstanceUID> "
            f"(in the sample sheet, or mr2ct convert --series UID):\n  {listed}"
        )
    return series[0]


def _slice_headers(folder: Path, series: SeriesInfo) -> list[SliceHeader]:
    headers = []
    for path, tags in zip(series.files, series.tags, strict=True):
        frames = tags["frames"]
        if frames and int(float(frames)) > 1:
            raise InputError(
                f"{folder}: {path.name} is a multi-frame (enhanced) DICOM file of {frames} frames; export the "
                "series as classic single-frame images"
            )
        spacing = _numbers(tags["pixel_spacing"], 2, "PixelSpacing (0028,0030)", path)
        headers.append(
            SliceHeader(
                path,
                _numbers(tags["position"], 3, "ImagePositionPatient (0020,0032)", path),
                _numbers(tags["orientation"], 6, "ImageOrientationPatient (0020,0037)", path),
                (float(spacing[0]), float(spacing[1])),
                (int(tags["rows"] or 0), int(tags["columns"] or 0)),
            )
        )
    return headers


def _check_alike(folder: Path, headers: list[SliceHeader]) -> None:
    first = headers[0]
    for h in headers[1:]:
        if np.abs(h.orientation - first.orientation).max() > ORIENTATION_TOLERANCE:
            raise InputError(
                f"{folder}: mixed slice orientations: {h.path.name} has ImageOrientationPatient "
                f"{np.round(h.orientation, 4).tolist()}, {first.path.name} {np.round(first.orientation, 4).tolist()}; "
                "a volume needs one orientation (a localizer or a second stack in the same series?)"
            )
        if h.shape != first.shape or not np.allclose(h.pixel_spacing, first.pixel_spacing, rtol=1e-4):
            raise InputError(
                f"{folder}: slices of different sizes: {h.path.name} is {h.shape} at {h.pixel_spacing} mm, "
                f"{first.path.name} {first.shape} at {first.pixel_spacing} mm"
            )


def _sorted_by_position(folder: Path, headers: list[SliceHeader]) -> tuple[list[SliceHeader], float, np.ndarray]:
    """The slices in order along the normal, the slice step (mm) and the normal (LPS)."""
    row, col = headers[0].orientation[:3], headers[0].orientation[3:]
    normal = np.cross(row, col)
    along = np.array([h.position @ normal for h in headers])
    order = np.argsort(along, kind="stable")
    headers, along = [headers[i] for i in order], along[order]
    if len(headers) < 2:
        raise InputError(f"{folder}: the series has a single slice; a volume needs several")
    steps = np.diff(along)
    if (steps < 1e-3).any():
        k = int(np.argmax(steps < 1e-3))
        raise InputError(
            f"{folder}: {headers[k].path.name} and {headers[k + 1].path.name} are at the same position "
            f"({along[k]:.3f} mm along the slice normal): duplicate slices, or two series with one UID"
        )
    step = float(np.median(steps))
    tolerance = max(STEP_TOLERANCE * step, 0.01)
    bad = np.abs(steps - step) > tolerance
    if bad.any():
        k = int(np.argmax(bad))
        gap = steps[k] / step
        what = (
            f"about {round(gap) - 1} slice(s) missing"
            if abs(gap - round(gap)) * step < tolerance and round(gap) > 1
            else "irregular slice spacing"
        )
        raise InputError(
            f"{folder}: {what} between {headers[k].path.name} and {headers[k + 1].path.name}: they are "
            f"{steps[k]:.3f} mm apart, the series' slice step is {step:.3f} mm; a volume needs evenly spaced slices"
        )
    # in-plane positions of consecutive slices must line up along the normal (no sheared stack)
    offsets = np.array([h.position - headers[0].position - (a - along[0]) * normal for h, a in zip(headers, along)])
    if np.abs(offsets).max() > max(tolerance, 0.05 * min(headers[0].pixel_spacing)):
        raise InputError(
            f"{folder}: the slices are shifted in-plane against each other (a gantry tilt or sheared stack, "
            f"{np.abs(offsets).max():.2f} mm); resample the series to an orthogonal grid first"
        )
    return headers, step, normal


def inspect_series(folder: str | os.PathLike, uid: str | None = None) -> SeriesInfo:
    """Check from the headers alone (no pixel data) that ``folder`` holds one usable series (or the one
    with SeriesInstanceUID ``uid``): what :func:`read_series` refuses, at a fraction of its cost."""
    return _inspect(Path(folder), uid)[0]


def _inspect(folder: Path, uid: str | None) -> tuple[SeriesInfo, list[SliceHeader], float, np.ndarray]:
    series = _choose(folder, uid)
    headers = _slice_headers(folder, series)
    _check_alike(folder, headers)
    return series, *_sorted_by_position(folder, headers)


def read_series(folder: str | os.PathLike, uid: str | None = None) -> Volume:
    """One DICOM series of ``folder`` (the only one, or the one with SeriesInstanceUID ``uid``) as a
    :class:`Volume` in physical units (RescaleSlope/Intercept applied), geometry from the tags."""
    return _read(Path(folder), uid)[0]


def _read(folder: Path, uid: str | None) -> tuple[Volume, SeriesInfo]:
    sitk = _sitk()
    series, headers, step, normal = _inspect(folder, uid)
    slices = []
    for h in headers:
        try:
            image = sitk.ReadImage(str(h.path), sitk.sitkFloat64, imageIO="GDCMImageIO")
        except RuntimeError as exc:
            raise InputError(f"{folder}: {h.path.name}: cannot decode the pixel data ({exc})") from exc
        pixels = sitk.GetArrayFromImage(image)
        if pixels.ndim != 3 or pixels.shape[0] != 1:
            raise InputError(f"{folder}: {h.path.name}: expected one grey-value slice, got pixels {pixels.shape}")
        slices.append(pixels[0].T)  # (columns, rows): NIfTI order, i along the row direction
    data = np.stack(slices, axis=-1)
    row, col = headers[0].orientation[:3], headers[0].orientation[3:]
    row_spacing, column_spacing = headers[0].pixel_spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2] = row * column_spacing, col * row_spacing, normal * step
    lps[:3, 3] = headers[0].position
    return volume_from_affine(data.astype(np.float32), np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps), series


def _storage(role: str, volume: Volume, folder: Path) -> type:
    """The NIfTI voxel type of a converted role: labels and masks as integers, CT as int16 when its HU are."""
    data = volume.data
    integral = bool(np.all(data == np.rint(data)))
    if role in ("mask", "labels"):
        if not integral or data.min() < 0 or data.max() > 255:
            raise InputError(
                f"{folder}: a {role} series must hold integer values 0..255, found {data.min():g}..{data.max():g}"
            )
        return np.uint8
    if role == "ct" and integral and data.min() >= -32768 and data.max() <= 32767:
        return np.int16
    return np.float32


def convert_series(
    folder: str | os.PathLike, out: str | os.PathLike, uid: str | None = None, role: str = "mr"
) -> dict[str, object]:
    """Convert one DICOM series to a gzipped NIfTI file (atomically); return a summary of what was read."""
    folder = Path(folder)
    volume, series = _read(folder, uid)
    write_volume(out, volume, _storage(role, volume, folder))
    return {
        "folder": str(folder),
        "series_uid": series.uid,
        "description": series.description,
        "slices": len(series.files),
        "shape": "x".join(map(str, volume.data.shape)),
        "spacing_mm": ",".join(f"{v:.4g}" for v in volume.spacing),
        "orientation": "".join(volume.disk_axcodes),
    }
