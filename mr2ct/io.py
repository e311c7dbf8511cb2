"""NIfTI volumes with their geometry, and atomic, deterministic file writes.

Every volume is held in the *canonical* voxel order RAS+ (array axis 0 runs
towards the patient's right, axis 1 towards anterior, axis 2 towards superior),
whatever the orientation on disk, so the same anatomy gives the same array for
an LPS- or RAS-stored file. The on-disk orientation is remembered and restored
on writing, so a volume read and written back keeps spacing, origin, direction
and orientation. Scaling (``scl_slope``/``scl_inter``) is applied on reading,
so ``uint16`` with an intercept, ``int16`` and ``float`` encodings of the same
CT give the same Hounsfield units.

Every write goes to a temporary file in the target folder and is renamed into
place, so a crash leaves either the old file or the new one, never half a file.
Gzip headers carry no timestamp, so the same content gives the same bytes.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as ornt

__all__ = [
    "InputError",
    "Volume",
    "atomic_path",
    "atomic_write_bytes",
    "read_volume",
    "write_volume",
]

#: Compression level for ``.nii.gz``: level 1 is several times faster than 6
#: and costs about 10 % in size on CT/MR volumes.
GZIP_LEVEL = 1


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
        image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise InputError(f"{path}: not a readable NIfTI image ({exc})") from exc
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path}: not a NIfTI image (read as {type(image).__name__})")
    return image


def read_volume(path: str | os.PathLike, dtype: type = np.float32) -> Volume:
    """Read a 3D NIfTI file into canonical RAS+ voxel order.

    Scale factors are applied (values in physical units, e.g. HU). Trailing
    singleton dimensions (``X×Y×Z×1``) are dropped; anything else that is not
    3D is rejected with an :class:`InputError` naming the file.
    """
    path = Path(path)
    image = _load_image(path)
    shape = image.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"{path}: expected a 3D image, got shape {image.shape}")
    try:
        data = np.asarray(image.get_fdata(dtype=np.float32 if dtype != np.float64 else np.float64))
    except Exception as exc:  # truncated or corrupt payload
        raise InputError(f"{path}: cannot read voxel data ({type(exc).__name__}: {exc})") from exc
    data = data.reshape(shape)
    affine = image.affine
    disk = ornt.io_orientation(affine)
    to_ras = ornt.ornt_transform(disk, ornt.axcodes2ornt(("R", "A", "S")))
    data = ornt.apply_orientation(data, to_ras)
    affine = affine @ ornt.inv_ornt_aff(to_ras, shape)
    axcodes = tuple(ornt.ornt2axcodes(disk))
    return Volume(np.ascontiguousarray(data, dtype=dtype), affine, axcodes)


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
