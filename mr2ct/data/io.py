"""NIfTI volumes with their geometry, and atomic, deterministic file writes.

Every volume is held in the *canonical* voxel order RAS+ (array axis 0 runs
towards the patient's right, axis 1 towards anterior, axis 2 towards superior),
whatever the orientation on disk, so the same anatomy gives the same array for
an LPS- or RAS-stored file. The on-disk orientation is remembered and restored
on writing, so a volume read and written back keeps spacing, origin, direction
and orientation. Scaling (``scl_slope``/``scl_inter``) is applied on reading,
so ``uint16`` with an intercept, ``int16`` and ``float`` encodings of the same
CT give the same Hounsfield units.

Reading refuses what cannot be one real value per voxel of a 3D grid (complex
or colour voxels, series of volumes, a zero voxel size) with an :class:`InputError`
naming the file. :func:`check_file` adds the checks that reading the voxels does
not make (validation runs it on every input): the whole gzip stream with its
CRC-32, the spatial unit, and qform/sform present and in agreement.

Every write goes to a temporary file in the target folder and is renamed into
place, so a crash leaves either the old file or the new one, never half a file.
Gzip headers carry no timestamp, so the same content gives the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import os
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import imageglobals
from nibabel import orientations as ornt

__all__ = [
    "InputError",
    "Volume",
    "atomic_path",
    "atomic_write_bytes",
    "check_file",
    "read_table",
    "read_volume",
    "write_volume",
]

#: Compression level for ``.nii.gz``: level 1 is several times faster than 6
#: and costs about 10 % in size on CT/MR volumes.
GZIP_LEVEL = 1

#: What pandas (and spreadsheets) read as a missing value by default: a subject id spelt like one
#: of these must be read with ``dtype=str, keep_default_na=False`` to survive (see :func:`read_table`).
NA_STRINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip


class InputError(ValueError):
    """Bad input data or configuration; the message names the culprit."""


@dataclass(frozen=True)
class Volume:
    """A 3D image in canonical RAS+ voxel order.

    ``data`` has shape ``(X, Y, Z)``; ``affine`` maps voxel indices of ``data``
    to world millimetres (RAS+). ``disk_axcodes`` is the orientation the file
    was stored in (e.g. ``("L", "P", "S")``), restored on writing.
    """

    data: np.ndarray
    affine: np.ndarray
    disk_axcodes: tuple[str, str, str] = ("R", "A", "S")

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def origin(self) -> tuple[float, float, float]:
        """World position (RAS+, mm) of the centre of voxel (0, 0, 0)."""
        return tuple(float(v) for v in self.affine[:3, 3])

    @property
    def direction(self) -> np.ndarray:
        """3×3 matrix of unit column vectors: the world direction of each array axis."""
        return self.affine[:3, :3] / np.asarray(self.spacing)

    def with_data(self, data: np.ndarray) -> Volume:
        """Same geometry, new voxel values (shape must match)."""
        if data.shape != self.data.shape:
            raise ValueError(f"shape {data.shape} does not match the volume's {self.data.shape}")
        return Volume(data, self.affine, self.disk_axcodes)


def _load_image(path: Path) -> nib.Nifti1Image:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        # nibabel logs (and repairs) header problems such as a zero pixdim; read_volume refuses those itself
        with imageglobals.LoggingOutputSuppressor():
            image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI image (read as {type(image).__name__})")
    return image


def _raw_header(path: Path, image: nib.Nifti1Image) -> nib.Nifti1Header:
    """The header as stored in the file, before nibabel repairs anything (e.g. a zero pixdim)."""
    klass = type(image.header)
    with (gzip.open if _is_gzip(path) else open)(path, "rb") as handle:
        block = handle.read(klass.sizeof_hdr)
    return klass(block, check=False)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def _check_voxel_type(path: Path, image: nib.Nifti1Image) -> None:
    stored = image.get_data_dtype()
    if stored.fields:
        kind = "RGBA" if len(stored.fields) == 4 else "RGB" if len(stored.fields) == 3 else "structured"
        raise InputError(
            f"{path}: voxels are {kind} colour values ({len(stored.fields)} components per voxel); expected one "
            "real number per voxel (a greyscale MR, a CT in HU, a 0/1 mask, integer labels): export the scan "
            "itself, not a screenshot or an overlay"
        )
    if stored.kind == "c":
        raise InputError(
            f"{path}: voxels are complex numbers ({stored}); expected one real number per voxel: export the "
            "magnitude image"
        )


def _shape_problem(shape: tuple[int, ...], image: nib.Nifti1Image) -> str:
    intent = image.header.get_intent()[0]
    named = f", NIfTI intent '{intent}'" if intent not in ("none", None, "") else ""
    if len(shape) < 3:
        return " (a single 2D slice; expected a volume of axial slices)"
    if len(shape) == 4:
        return f" ({shape[3]} volumes: a time series or several echoes{named}; expected one 3D volume per file)"
    return f" ({int(np.prod(shape[3:]))} components per voxel{named}; expected one value per voxel)"


def _check_voxel_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse a missing, zero or non-finite voxel size, in the header's pixdim or in its affine."""
    pixdim = np.asarray(_raw_header(path, image)["pixdim"][1:4], dtype=np.float64)
    for axis, size in enumerate(pixdim):
        if not np.isfinite(size) or size == 0:
            raise InputError(
                f"{path}: the voxel size pixdim[{axis + 1}] is {size:g}: the pixel spacing is missing; expected "
                "the voxel size in mm along each axis (e.g. 1.0 1.0 2.5)"
            )
    columns = np.asarray(image.affine[:3, :3], dtype=np.float64)
    norms = np.linalg.norm(columns, axis=0)
    if not np.isfinite(image.affine).all() or (norms == 0).any():
        raise InputError(
            f"{path}: the header's qform/sform gives voxel size {np.round(norms, 6).tolist()} mm: a voxel size "
            "is zero or not a number; expected a positive spacing along every axis"
        )
    if abs(np.linalg.det(columns)) < 1e-6 * np.prod(norms):
        raise InputError(
            f"{path}: the header's qform/sform maps two voxel axes onto the same direction (a degenerate affine); "
            "expected three independent axes"
        )


def read_volume(path: str | os.PathLike, dtype: type = np.float32) -> Volume:
    """Read a 3D NIfTI file into canonical RAS+ voxel order.

    Scale factors are applied (values in physical units, e.g. HU). Trailing
    singleton dimensions (``X×Y×Z×1``) are dropped; anything else that is not
    3D, complex or colour voxels and a zero voxel size are rejected with an
    :class:`InputError` naming the file.
    """
    path = Path(path)
    image = _load_image(path)
    _check_voxel_type(path, image)
    shape = image.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D image, got shape {image.shape}{_shape_problem(image.shape, image)}")
    _check_voxel_size(path, image)
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32 if dtype != np.float64 else np.float64))
    except EOFError as exc:
        raise InputError(
            f"{path}: cannot read voxel data: the file ends before its last voxel ({exc}); it was cut short "
            "(an interrupted copy or download): copy it again"
        ) from exc
    except Exception as exc:  # truncated or corrupt payload
        raise InputError(f"{path}: cannot read voxel data ({type(exc).__name__}: {exc})") from exc
    return volume_from_affine(data.reshape(shape), image.affine, dtype)


def volume_from_affine(data: np.ndarray, affine: np.ndarray, dtype: type = np.float32) -> Volume:
    """A :class:`Volume` of voxels ``data`` stored in the order that ``affine`` (voxel indices to RAS+ mm)
    describes: reordered to canonical RAS+, with that order kept as the orientation to write back."""
    disk = ornt.io_orientation(affine)
    to_ras = ornt.ornt_transform(disk, ornt.axcodes2ornt(("R", "A", "S")))
    affine = affine @ ornt.inv_ornt_aff(to_ras, data.shape)  # the shape as stored, before reordering
    data = ornt.apply_orientation(data, to_ras)
    axcodes = tuple(ornt.ornt2axcodes(disk))
    return Volume(np.ascontiguousarray(data, dtype=dtype), affine, axcodes)


#: NIfTI spatial unit codes (xyzt_units & 7) read as millimetres: 0 (unknown, taken as mm, as every reader
#: does) and 2 (mm); 1 (metre) and 3 (micrometre) are refused
_UNITS_READ_AS_MM = {0, 2}


def check_file(path: str | os.PathLike, tolerance_mm: float = 0.01) -> str:
    """Check what reading the voxels does not; return the SHA-256 of the file's bytes.

    * the whole gzip stream is read once, so a damaged CRC-32, a wrong length, a
      truncated end or trailing data is found (nibabel stops reading at the last
      voxel and checks none of them);
    * the header's spatial unit is millimetres (or unknown, read as mm);
    * the file has a qform or an sform, and when it has both they place every
      corner of the grid within ``tolerance_mm`` of each other (readers differ in
      which of the two they use).

    Raises :class:`InputError` naming the file, what was found and what is expected.
    """
    path = Path(path)
    image = _load_image(path)
    header = _raw_header(path, image)
    unit_code = int(header["xyzt_units"]) & 0x07
    if unit_code not in _UNITS_READ_AS_MM:
        unit = {1: "metres", 3: "micrometres"}.get(unit_code, f"code {unit_code}")
        raise InputError(
            f"{path}: the header gives the voxel size in {unit} (xyzt_units), spacing "
            f"{np.round(np.asarray(header['pixdim'][1:4], dtype=float), 6).tolist()}; the workflow reads sizes and "
            "positions in millimetres: rewrite the file in mm (unit mm)"
        )
    qcode, scode = int(header["qform_code"]), int(header["sform_code"])
    if qcode <= 0 and scode <= 0:
        raise InputError(
            f"{path}: the header has neither a qform nor an sform (qform_code and sform_code are 0), so the "
            "position and orientation of the voxels (left/right included) are unknown; expected the geometry "
            "of the scan (e.g. as converted from DICOM by dcm2niix or SimpleITK)"
        )
    if qcode > 0 and scode > 0:
        try:
            qform, sform = header.get_qform(), header.get_sform()
        except Exception as exc:
            raise InputError(f"{path}: the header's qform cannot be read ({exc})") from exc
        shape = image.shape[:3]
        corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, max(n - 1, 0)) for n in shape])]).T
        gap = float(np.linalg.norm((sform - qform)[:3] @ corners, axis=0).max())
        if not gap <= tolerance_mm:
            raise InputError(
                f"{path}: its qform and sform disagree: they place voxels up to {gap:.3g} mm apart (qform origin "
                f"{np.round(qform[:3, 3], 2).tolist()}, axes {nib.aff2axcodes(qform)}; sform origin "
                f"{np.round(sform[:3, 3], 2).tolist()}, axes {nib.aff2axcodes(sform)}), and readers differ in which "
                f"one they use; expected the same geometry within data.geometry_tolerance_mm ({tolerance_mm:g} mm)"
            )
    return _stream_digest(path)


class _HashingReader:
    """A read-only file object that feeds every byte it reads to a hash."""

    mode = "rb"

    def __init__(self, handle, digest) -> None:
        self.handle, self.digest = handle, digest

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(size)
        self.digest.update(chunk)
        return chunk


def _stream_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if _is_gzip(path):
            try:
                with gzip.GzipFile(fileobj=_HashingReader(handle, digest), mode="rb") as stream:
                    while stream.read(1 << 24):
                        pass
            except EOFError as exc:
                raise InputError(
                    f"{path}: the gzip stream ends before its end-of-stream marker ({exc}): the file was cut short "
                    "(an interrupted copy or download); expected a complete .nii.gz: copy it again"
                ) from None
            except (OSError, zlib.error) as exc:
                text = str(exc)
                what = (
                    "its CRC-32 checksum does not match the content"
                    if "CRC" in text
                    else "the length recorded at its end does not match the content"
                    if "length" in text
                    else "unexpected bytes follow the compressed stream"
                    if "Not a gzipped file" in text
                    else "the compressed data is invalid"
                )
                raise InputError(
                    f"{path}: the gzip stream is damaged: {what} ({text}); the file changed in transfer or on disk "
                    "after it was written: copy it again from the source"
                ) from None
        for chunk in iter(lambda: handle.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_table(path: str | os.PathLike, sep: str = ",", text_columns: tuple[str, ...] = ("subject",)):
    """Read a CSV/TSV with ``text_columns`` kept as written (ids such as ``001``, ``1e3`` or ``NA`` stay
    strings, never 1, 1000.0 or NaN); other columns are parsed as pandas does by default."""
    import pandas as pd

    columns = pd.read_csv(path, sep=sep, nrows=0).columns
    return pd.read_csv(
        path,
        sep=sep,
        dtype={c: str for c in text_columns if c in columns},
        keep_default_na=False,
        na_values={c: list(NA_STRINGS) for c in columns if c not in text_columns},
    )


def write_volume(
    path: str | os.PathLike,
    volume: Volume,
    dtype: type = np.int16,
    *,
    intercept: float = 0.0,
    slope: float = 1.0,
) -> Path:
    """Write a volume as (gzipped, if the name ends in ``.gz``) NIfTI-1, atomically.

    The array is rounded and stored as ``dtype`` (integers) with optional
    ``slope``/``intercept`` so that stored·slope + intercept = values, and put
    back into the volume's on-disk orientation.
    """
    path = Path(path)
    data = volume.data
    from_ras = ornt.ornt_transform(ornt.axcodes2ornt(("R", "A", "S")), ornt.axcodes2ornt(volume.disk_axcodes))
    disk_data = ornt.apply_orientation(data, from_ras)
    disk_affine = volume.affine @ ornt.inv_ornt_aff(from_ras, data.shape)
    stored = (disk_data - intercept) / slope if (slope != 1.0 or intercept != 0.0) else disk_data
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(dtype)
        stored = np.clip(np.rint(stored), info.min, info.max)
    stored = np.ascontiguousarray(stored, dtype=dtype)
    image = nib.Nifti1Image(stored, disk_affine)
    header = image.header
    header.set_xyzt_units("mm", "sec")
    header.set_qform(disk_affine, code=1)
    header.set_sform(disk_affine, code=1)
    if slope != 1.0 or intercept != 0.0:
        header.set_slope_inter(slope, intercept)
    else:
        header.set_slope_inter(1.0, 0.0)
    payload = image.to_bytes()
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=GZIP_LEVEL, mtime=0)
    atomic_write_bytes(path, payload)
    return path


def _process_umask() -> int:
    """The umask, read once at import (setting and restoring it later would race with threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _process_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    The temporary name keeps the suffix so libraries that infer the format
    from the extension (matplotlib, NumPy) behave. The result gets the
    permissions of a file created normally (0666 minus the umask), not the
    private 0600 of a temporary file: results are shared on clusters.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))
