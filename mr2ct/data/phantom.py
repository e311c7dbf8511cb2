"""Synthetic pelvis phantom cohort: paired T1-like MR, CT (HU), body mask and labels.

No real pelvis data can ship with the workflow, so the default cohort is drawn
here, deterministically from ``(seed, subject index)``. Each subject is a 3D
axial volume of the hip region from below the lesser trochanters to the sacral
promontory (the same anatomical range for every subject, so unpaired MR and CT
training halves see the same mix of slice levels), with anisotropic voxels
(1 mm in plane, 2.5 mm between slices by default).

Anatomy is built from signed distance functions (SDFs, millimetres, negative
inside) in a local frame centred between the two hip-joint centres: x towards
the patient's right, y anterior, z superior (RAS+). Bones are unions of
spheres, capsules, ellipsoids and swept curves; the cortex is the outer shell
of a bone's SDF and marrow its interior. Muscles are ellipses swept along z
with keyframed centre, radii and angle, each wrapped in a thin fat plane so
their boundaries are visible, as in real images.

Tissue values (subject-specific, drawn around these means):
CT (HU): air −1000, fat −100, muscle 45, bowel 35, urine 8, cartilage 90,
marrow 150–350, cortical bone 1100–1500 (typical adult values, e.g.
Schneider et al. 1996). T1 MR (arbitrary units): fat 900, fatty marrow
650–820, muscle 330, bowel 380, cartilage 450, urine 150, cortical bone and
air ~0 — so bone and air are both dark in MR and no global intensity map
turns MR into CT. MR also carries a smooth multiplicative bias field and
Rician noise.

Variation between subjects: body size, subcutaneous fat thickness, pelvis
scale and width, femoral head size, femoral pose (abduction, flexion,
rotation, anteversion, neck-shaft angle), bladder filling, bowel loops and
gas, bone density, tissue intensities and the MR bias field.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from mr2ct.data.io import Volume, atomic_write_text, write_volume

__all__ = [
    "LABELS",
    "PhantomSettings",
    "SubjectParameters",
    "render_subject",
    "sample_subject",
    "subject_ids",
    "write_cohort",
    "write_subject",
]

#: Label ids and names written to ``labels.tsv``. Right is +x in RAS+.
LABELS: dict[int, str] = {
    1: "pelvis",
    2: "femur_right",
    3: "femur_left",
    4: "gluteus_maximus_right",
    5: "gluteus_maximus_left",
    6: "gluteus_medius_right",
    7: "gluteus_medius_left",
    8: "iliopsoas_right",
    9: "iliopsoas_left",
    10: "obturator_internus_right",
    11: "obturator_internus_left",
    12: "bladder",
}
_LABEL_ID = {name: i for i, name in LABELS.items()}

# tissue classes
AIR, FAT, MUSCLE, BOWEL, URINE, MARROW, CORTEX, CARTILAGE = range(8)
_N_TISSUES = 8

#: Extent of every subject along z in the unit-pelvis frame (mm, before scaling):
#: from below the lesser trochanters to the sacral promontory.
Z_RANGE_MM = (-70.0, 120.0)


@dataclass(frozen=True)
class PhantomSettings:
    """Grid of the generated volumes.

    ``matrix`` is the in-plane size (x, y) in voxels, ``spacing`` the voxel
    size (x, y, z) in mm. The number of slices follows from the subject's
    pelvis height, so every subject covers the same anatomical range.
    """

    matrix: tuple[int, int] = (448, 320)
    spacing: tuple[float, float, float] = (1.0, 1.0, 2.5)

    def __post_init__(self) -> None:
        if len(self.matrix) != 2 or min(self.matrix) < 16:
            raise ValueError(f"phantom matrix must be two sizes ≥ 16, got {self.matrix}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"phantom spacing must be three positive sizes, got {self.spacing}")


@dataclass(frozen=True)
class FemurPose:
    """Pose and shape of one femur (degrees, mm)."""

    abduction: float
    flexion: float
    rotation: float
    anteversion: float
    neck_shaft_angle: float


@dataclass(frozen=True)
class SubjectParameters:
    """Everything that makes one phantom subject differ from another."""

    scale: float  # overall pelvis/body scale
    width: float  # extra lateral scale of the pelvis
    muscle_bulk: float
    fat_mm: float  # lateral subcutaneous fat thickness
    head_radius_mm: float
    femur_right: FemurPose
    femur_left: FemurPose
    bladder_fill: float  # volume factor
    rectal_gas: bool
    bowel_seed: int
    hu_fat: float
    hu_muscle: float
    hu_marrow: float
    hu_cortex: float
    t1_marrow: float
    t1_gain: float
    bias: tuple[float, ...] = field(default=(0.0,) * 6)
    table_offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)


def subject_ids(n: int) -> list[str]:
    """Subject ids of an ``n``-subject phantom cohort: ``phantom001``, …"""
    return [f"phantom{i + 1:03d}" for i in range(n)]


def sample_subject(seed: int, index: int) -> SubjectParameters:
    """Draw the parameters of subject ``index`` (0-based) of cohort ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0]))
    u = rng.uniform

    def pose() -> FemurPose:
        return FemurPose(
            abduction=u(-4.0, 10.0),
            flexion=u(-6.0, 15.0),
            rotation=u(-15.0, 15.0),
            anteversion=u(5.0, 25.0),
            neck_shaft_angle=u(120.0, 135.0),
        )

    scale = u(0.92, 1.06)
    return SubjectParameters(
        scale=scale,
        width=u(0.95, 1.05),
        muscle_bulk=u(0.85, 1.15),
        fat_mm=u(8.0, 28.0),
        head_radius_mm=23.0 * scale * u(0.94, 1.06),
        femur_right=pose(),
        femur_left=pose(),
        bladder_fill=u(0.3, 1.5),
        rectal_gas=bool(rng.random() < 0.6),
        bowel_seed=int(rng.integers(0, 2**31 - 1)),
        hu_fat=u(-115.0, -85.0),
        hu_muscle=u(38.0, 55.0),
        hu_marrow=u(150.0, 350.0),
        hu_cortex=u(1100.0, 1500.0),
        t1_marrow=u(650.0, 820.0),
        t1_gain=u(0.8, 1.25),
        bias=tuple(float(v) for v in rng.normal(0.0, 0.12, size=6)),
        table_offset_mm=(u(-20.0, 20.0), u(-30.0, 10.0), u(-400.0, -300.0)),
    )


# --------------------------------------------------------------------------
# signed distance primitives on broadcast coordinate arrays (mm)


def _length(*components: np.ndarray) -> np.ndarray:
    total = components[0] * components[0]
    for c in components[1:]:
        total = total + c * c
    return np.sqrt(total)


def _f(values) -> list[float]:
    """Plain Python floats: NumPy float64 scalars would promote float32 grids to float64."""
    return [float(v) for v in values]


def _sdf_sphere(X, Y, Z, centre, radius):
    cx, cy, cz = _f(centre)
    return _length(X - cx, Y - cy, Z - cz) - float(radius)


def _sdf_ellipsoid(X, Y, Z, centre, radii):
    """Bound of the ellipsoid distance (Quilez): exact on the surface, smooth near it."""
    (cx, cy, cz), (rx, ry, rz) = _f(centre), _f(radii)
    u, v, w = (X - cx) / rx, (Y - cy) / ry, (Z - cz) / rz
    k0 = _length(u, v, w)
    k1 = _length(u / rx, v / ry, w / rz)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _sdf_capsule(X, Y, Z, a, b, radius_a, radius_b):
    """Distance to the segment a–b minus a radius interpolated along it (tapered capsule)."""
    a, b = _f(a), _f(b)
    bx, by, bz = b[0] - a[0], b[1] - a[1], b[2] - a[2]
    px, py, pz = X - a[0], Y - a[1], Z - a[2]
    h = np.clip((px * bx + py * by + pz * bz) / (bx * bx + by * by + bz * bz), 0.0, 1.0)
    ra, rb = float(radius_a), float(radius_b)
    return _length(px - bx * h, py - by * h, pz - bz * h) - (ra + (rb - ra) * h)


def _sdf_ellipse_swept(X, Y, cx, cy, a, b, angle):
    """Rotated 2D ellipse whose parameters vary along z (arrays broadcast over z)."""
    angle = np.asarray(angle, dtype=np.float32)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = X - cx, Y - cy
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    k0 = _length(u, v)
    k1 = _length(u / a, v / b)
    return k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)


def _sdf_curve_swept(X, Y, p0, p1, p2, half_thickness, n_segments=10):
    """Thick quadratic Bézier curve p0–p1–p2 per slice (points are (2, nz) arrays)."""
    t = np.linspace(0.0, 1.0, n_segments + 1)
    pts = [((1 - ti) ** 2) * p0 + 2 * (1 - ti) * ti * p1 + (ti**2) * p2 for ti in t]
    best = None
    for a, b in zip(pts[:-1], pts[1:]):
        bax, bay = b[0] - a[0], b[1] - a[1]
        px, py = X - a[0], Y - a[1]
        denom = np.maximum(bax * bax + bay * bay, 1e-9)
        h = np.clip((px * bax + py * bay) / denom, 0.0, 1.0)
        d = _length(px - bax * h, py - bay * h)
        best = d if best is None else np.minimum(best, d)
    return best - half_thickness


# --------------------------------------------------------------------------


class _Canvas:
    """Tissue and label volumes painted in priority order (later wins)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray):
        self.x, self.y, self.z = x, y, z
        shape = (x.size, y.size, z.size)
        self.tissue = np.zeros(shape, np.uint8)
        self.label = np.zeros(shape, np.uint8)

    def box(self, lo, hi):
        """Index slices and broadcast coordinates of the sub-grid inside [lo, hi] (mm)."""
        sl = []
        for coords, a, b in zip((self.x, self.y, self.z), lo, hi):
            i0 = int(np.searchsorted(coords, a, side="left"))
            i1 = int(np.searchsorted(coords, b, side="right"))
            sl.append(slice(i0, max(i0, i1)))
        X = self.x[sl[0]][:, None, None]
        Y = self.y[sl[1]][None, :, None]
        Z = self.z[sl[2]][None, None, :]
        return tuple(sl), X, Y, Z

    def paint(self, sl, inside: np.ndarray, tissue: int, label: int = 0) -> None:
        if inside.size == 0:
            return
        self.tissue[sl][inside] = tissue
        self.label[sl][inside] = label


def _keyframes(z: np.ndarray, zs, values) -> np.ndarray:
    return np.interp(z, zs, values).astype(np.float32)


def _taper(z: np.ndarray, z0: float, z1: float, length: float = 8.0) -> np.ndarray:
    """Radius factor rounding a swept structure's ends over ``length`` mm."""
    d = np.minimum(z - z0, z1 - z) / length
    return np.sqrt(np.clip(d, 0.0, 1.0)).astype(np.float32)


# Muscles: right-side keyframes in the unit-pelvis frame (z, cx, cy, a, b, angle°).
# Named muscles carry a label; the others are unlabelled muscle tissue that
# fills the hip region as real adductors, thigh and abdominal muscles do.
_MUSCLES = {
    "gluteus_maximus": dict(
        z=[-70, -40, 0, 40, 80, 115],
        cx=[62, 72, 92, 90, 74, 58],
        cy=[-72, -80, -86, -90, -90, -84],
        a=[40, 48, 50, 45, 36, 24],
        b=[24, 27, 29, 25, 21, 14],
        ang=[-15, -20, -25, -25, -20, -10],
    ),
    "gluteus_medius": dict(
        z=[0, 30, 60, 95, 118],
        cx=[124, 97, 100, 103, 106],
        cy=[-14, -28, -31, -35, -40],
        a=[15, 27, 34, 38, 28],
        b=[12, 13, 14, 14, 10],
        ang=[60, 52, 54, 50, 47],
    ),
    "iliopsoas": dict(
        z=[-62, -30, 0, 30, 60, 95, 120],
        cx=[100, 74, 74, 62, 60, 62, 45],
        cy=[0, 36, 42, 8, -3, -1, -25],
        a=[10, 14, 16, 20, 26, 28, 22],
        b=[10, 12, 13, 13, 13, 13, 17],
        ang=[0, 0, 0, 50, 54, 50, 30],
    ),
    "obturator_internus": dict(
        z=[-58, -30, 0, 18],
        cx=[55, 46, 48, 52],
        cy=[-32, -10, -10, -15],
        a=[12, 23, 21, 12],
        b=[7, 8, 7, 5],
        ang=[60, 85, 85, 80],
    ),
}
_OTHER_MUSCLES = {
    "rectus_abdominis": dict(z=[40, 120], cx=[30, 32], cy=[84, 90], a=[26, 30], b=[8, 9], ang=[0, 0]),
    "anterior_thigh": dict(
        z=[-70, -10, 15], cx=[100, 106, 112], cy=[52, 50, 40], a=[32, 26, 14], b=[20, 16, 9], ang=[20, 20, 20]
    ),
    "vastus_lateralis": dict(z=[-70, -35], cx=[150, 150], cy=[-5, -5], a=[13, 9], b=[30, 22], ang=[0, 0]),
    "adductors": dict(z=[-70, -35], cx=[48, 52], cy=[22, 18], a=[30, 18], b=[24, 14], ang=[30, 30]),
    "piriformis": dict(z=[30, 72], cx=[78, 58], cy=[-62, -72], a=[34, 28], b=[9, 9], ang=[-30, -30]),
    "quadratus_femoris": dict(z=[-56, -36], cx=[88, 88], cy=[-40, -40], a=[24, 20], b=[9, 8], ang=[10, 10]),
}

# Muscle hull (the body without subcutaneous fat) in the unit frame: lateral
# half-width, posterior and anterior extent.
_BODY = dict(
    z=[-70, -30, 0, 40, 90, 120],
    half_width=[150, 152, 152, 142, 138, 136],
    posterior=[-100, -108, -112, -112, -106, -100],
    anterior=[72, 76, 80, 90, 96, 98],
)
# Pelvic cavity (visceral fat holding bladder, rectum and bowel), unit frame.
_CAVITY = dict(
    z=[-45, -10, 20, 60, 100, 120], a=[26, 34, 38, 42, 46, 48], cy=[12, 6, 0, -4, -8, -8], b=[40, 52, 58, 60, 58, 54]
)

# Sacrum (midline ellipse per slice) and ilium (thick Bézier curve per slice), unit frame.
_SACRUM = dict(
    z=[-30, 0, 40, 80, 110, 125], cy=[-86, -90, -85, -72, -60, -55], a=[8, 18, 30, 42, 48, 50], b=[6, 9, 14, 18, 22, 22]
)
_ILIUM = dict(
    z=[8, 35, 60, 95, 128],
    p0x=[60, 58, 52, 48, 55],
    p0y=[-30, -42, -55, -60, -62],
    p2x=[96, 100, 108, 118, 124],
    p2y=[5, 12, 22, 24, 12],
    bow=[0, 4, 10, 14, 12],
    half=[14, 10, 6.5, 4.5, 4.5],
)


def _rotation(pose: FemurPose, side: float) -> np.ndarray:
    """Femur pose as a rotation about the hip centre (local frame, x lateral for side=+1)."""
    a = math.radians(-side * pose.abduction)
    f = math.radians(pose.flexion)
    r = math.radians(side * pose.rotation)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(f), -math.sin(f)], [0, math.sin(f), math.cos(f)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _femur_sdf(X, Y, Z, hip, pose: FemurPose, side: float, head_r: float, s: float):
    """SDF of one femur, posed by rotating the query points into the neutral frame."""
    rot = [_f(row) for row in _rotation(pose, side)]
    hx, hy, hz = _f(hip)
    dx, dy, dz = X - hx, Y - hy, Z - hz
    # p_local = R^T (p - hip)
    lx = rot[0][0] * dx + rot[1][0] * dy + rot[2][0] * dz
    ly = rot[0][1] * dx + rot[1][1] * dy + rot[2][1] * dz
    lz = rot[0][2] * dx + rot[1][2] * dy + rot[2][2] * dz
    nsa = math.radians(pose.neck_shaft_angle)
    ante = math.radians(pose.anteversion)
    neck_len = 45.0 * s
    # from the head centre towards the neck-shaft junction: lateral, inferior, posterior
    d = np.array([side * math.sin(nsa) * math.cos(ante), -math.sin(nsa) * math.sin(ante), math.cos(nsa)])
    junction = neck_len * d
    o = (0.0, 0.0, 0.0)
    parts = [
        _sdf_sphere(lx, ly, lz, o, head_r),
        _sdf_capsule(lx, ly, lz, o, junction, 0.66 * head_r, 0.72 * head_r),
        _sdf_ellipsoid(lx, ly, lz, junction + np.array([side * 10, -6, 14]) * s, np.array([16, 18, 24]) * s),
        _sdf_capsule(
            lx, ly, lz, junction + np.array([0, 0, 10]) * s, junction + np.array([0, 0, -300]), 15.0 * s, 13.0 * s
        ),
        _sdf_ellipsoid(lx, ly, lz, junction + np.array([-side * 12, -10, -30]) * s, np.array([9, 9, 12]) * s),
    ]
    sdf = parts[0]
    for p in parts[1:]:
        sdf = np.minimum(sdf, p)
    # cortex is thin in head and neck, thick along the shaft below the lesser trochanter
    cortex = 2.0 + 4.0 * np.clip((float(junction[2]) - 20.0 * s - lz) / (40.0 * s), 0.0, 1.0)
    return sdf, cortex


def _paint_bone(canvas: _Canvas, sl, sdf: np.ndarray, cortex, label: int) -> None:
    inside = sdf < 0
    canvas.paint(sl, inside, MARROW, label)
    canvas.paint(sl, inside & (sdf >= -cortex), CORTEX, label)


def _paint_swept_muscle(canvas: _Canvas, spec: dict, side: float, s: float, w: float, bulk: float, label: int) -> None:
    z0, z1 = spec["z"][0] * s, spec["z"][-1] * s
    reach = (max(spec["a"] + spec["b"]) * bulk + 4.0) * s
    xs = [side * v * s * w for v in spec["cx"]]
    ys = [v * s for v in spec["cy"]]
    lo = (min(xs) - reach, min(ys) - reach, z0)
    hi = (max(xs) + reach, max(ys) + reach, z1)
    sl, X, Y, Z = canvas.box(lo, hi)
    if X.size == 0 or Y.size == 0 or Z.size == 0:
        return
    zz = Z / s
    taper = _taper(zz, spec["z"][0], spec["z"][-1])
    cx = _keyframes(zz, spec["z"], spec["cx"]) * side * s * w
    cy = _keyframes(zz, spec["z"], spec["cy"]) * s
    a = np.maximum(_keyframes(zz, spec["z"], spec["a"]) * s * bulk * taper, 0.5)
    b = np.maximum(_keyframes(zz, spec["z"], spec["b"]) * s * bulk * taper, 0.5)
    ang = np.radians(_keyframes(zz, spec["z"], spec["ang"])) * side
    sdf = _sdf_ellipse_swept(X, Y, cx, cy, a, b, ang)
    present = taper > 0
    canvas.paint(sl, (sdf < 1.5) & present, FAT, 0)  # fat plane around the muscle
    canvas.paint(sl, (sdf < 0) & present, MUSCLE, label)


def _pelvis_sdf(canvas: _Canvas, p: SubjectParameters):
    """SDF of the pelvis (both hip bones and the sacrum) on the whole grid, with cortex thickness."""
    s, w = p.scale, p.width
    hip_x = 88.0 * s * w
    big = np.float32(1e4)
    sdf = np.full(canvas.tissue.shape, big, np.float32)

    def union(sl, part):
        np.minimum(sdf[sl], part, out=sdf[sl])

    # sacrum
    zs = _SACRUM["z"]
    sl, X, Y, Z = canvas.box((-60 * s, -120 * s, zs[0] * s), (60 * s, -25 * s, zs[-1] * s))
    zz = Z / s
    union(
        sl,
        _sdf_ellipse_swept(
            X,
            Y,
            0.0,
            _keyframes(zz, zs, _SACRUM["cy"]) * s,
            np.maximum(_keyframes(zz, zs, _SACRUM["a"]) * s * w * _taper(zz, zs[0], 1e9, 10.0), 0.5),
            _keyframes(zz, zs, _SACRUM["b"]) * s,
            0.0,
        ),
    )
    for side in (1.0, -1.0):
        hip = np.array([side * hip_x, 0.0, 0.0])
        r_in = p.head_radius_mm + 2.5
        r_out = r_in + 9.0 * s
        sl, X, Y, Z = canvas.box(hip - r_out - 2, hip + r_out + 2)
        hx, hy, hz = _f(hip)
        dist = _length(X - hx, Y - hy, Z - hz)
        opening = np.array([side * 1.0, 0.35, -0.6])
        ox, oy, oz = _f(opening / np.linalg.norm(opening))
        facing = (X - hx) * ox + (Y - hy) * oy + (Z - hz) * oz
        cut = facing - 0.25 * r_out
        union(sl, np.maximum(np.maximum(dist - r_out, r_in - dist), cut))
        # ilium: thick curve per slice from the sacroiliac joint to the anterior spines
        zk = _ILIUM["z"]
        sl, X, Y, Z = canvas.box(
            (min(side * 40 * s * w, side * 135 * s * w), -75 * s, zk[0] * s),
            (max(side * 40 * s * w, side * 135 * s * w), 35 * s, zk[-1] * s),
        )
        zz = Z[0, 0, :] / s
        half = _keyframes(zz, zk, _ILIUM["half"]) * s * np.maximum(_taper(zz, zk[0] - 8, zk[-1], 6.0), 0.3)
        sac_half = _keyframes(zz, _SACRUM["z"], _SACRUM["a"]) * s * w
        p0x = _keyframes(zz, zk, _ILIUM["p0x"]) * s * w
        joint = (zz > 55) & (zz < 118)
        p0x = np.where(joint, np.maximum(p0x, sac_half + half + 3.0), p0x)
        p0 = np.stack([side * p0x, _keyframes(zz, zk, _ILIUM["p0y"]) * s])
        p2 = np.stack([side * _keyframes(zz, zk, _ILIUM["p2x"]) * s * w, _keyframes(zz, zk, _ILIUM["p2y"]) * s])
        mid = 0.5 * (p0 + p2)
        tangent = p2 - p0
        normal = np.stack([tangent[1], -tangent[0]]) / np.maximum(np.linalg.norm(tangent, axis=0), 1e-6)
        normal *= side  # points laterally/posteriorly; bow pushes the control point medially
        p1 = mid - normal * _keyframes(zz, zk, _ILIUM["bow"]) * s
        curve = _sdf_curve_swept(X, Y, p0[:, None, None, :], p1[:, None, None, :], p2[:, None, None, :], half)
        union(sl, curve)
        # pubis and ischium
        scale_pt = lambda q, side=side: np.array([side * q[0] * s * w, q[1] * s, q[2] * s])  # noqa: E731
        for a, b, ra, rb in (
            ((70, 18, -10), (9, 52, -32), 11, 8),  # superior pubic ramus
            ((78, -22, -12), (58, -38, -60), 14, 13),  # ischium
            ((58, -30, -62), (12, 44, -50), 8, 7),  # inferior pubic ramus
        ):
            pa, pb = scale_pt(a), scale_pt(b)
            r = max(ra, rb) * s + 2
            sl, X, Y, Z = canvas.box(np.minimum(pa, pb) - r, np.maximum(pa, pb) + r)
            union(sl, _sdf_capsule(X, Y, Z, pa, pb, ra * s, rb * s))
        centre = scale_pt((14, 50, -40))
        radii = np.array([9, 10, 16]) * s
        sl, X, Y, Z = canvas.box(centre - radii - 2, centre + radii + 2)
        union(sl, _sdf_ellipsoid(X, Y, Z, centre, radii))
    return sdf


def _paint_body(canvas: _Canvas, p: SubjectParameters) -> np.ndarray:
    """Body outline: an ellipse per slice (deeper behind than in front), subcutaneous fat outside
    the muscle hull, muscle inside it, visceral fat in the pelvic cavity. Returns the body mask."""
    s, w = p.scale, p.width
    x, y, z = canvas.x, canvas.y, canvas.z
    sl, X, Y, Z = canvas.box((x[0], y[0], z[0]), (x[-1], y[-1], z[-1]))
    zz = Z / s
    half_w = _keyframes(zz, _BODY["z"], _BODY["half_width"]) * s * w + p.fat_mm
    post = _keyframes(zz, _BODY["z"], _BODY["posterior"]) * s - 1.3 * p.fat_mm
    ant = _keyframes(zz, _BODY["z"], _BODY["anterior"]) * s + 1.2 * p.fat_mm
    cy = 0.5 * (post + ant)
    depth = np.where(Y < cy, cy - post, ant - cy)
    body_sdf = _sdf_ellipse_swept(X, Y, 0.0, cy, half_w, depth, 0.0)
    body = body_sdf < 0
    canvas.paint(sl, body, FAT)
    canvas.paint(sl, body_sdf < -p.fat_mm, MUSCLE)
    del body_sdf
    zc = _CAVITY["z"]
    sl_c, Xc, Yc, Zc = canvas.box((-60 * s * w, -60 * s, zc[0] * s), (60 * s * w, 80 * s, z[-1]))
    zz = Zc / s
    taper = _taper(zz, zc[0], 1e9, 10.0)
    cavity = _sdf_ellipse_swept(
        Xc,
        Yc,
        0.0,
        _keyframes(zz, zc, _CAVITY["cy"]) * s,
        np.maximum(_keyframes(zz, zc, _CAVITY["a"]) * s * w * taper, 0.5),
        np.maximum(_keyframes(zz, zc, _CAVITY["b"]) * s * taper, 0.5),
        0.0,
    )
    canvas.paint(sl_c, cavity < 0, FAT)
    return body


def _paint_soft_organs(canvas: _Canvas, p: SubjectParameters) -> None:
    """Bowel loops (some with gas) in the pelvic cavity, the muscles, bladder and rectum."""
    s, w = p.scale, p.width
    bowel_rng = np.random.default_rng(p.bowel_seed)
    for _ in range(6):
        centre = np.array(
            [bowel_rng.uniform(-38, 38) * s, bowel_rng.uniform(-25, 45) * s, bowel_rng.uniform(45, 115) * s]
        )
        radii = np.array([bowel_rng.uniform(12, 24), bowel_rng.uniform(10, 20), bowel_rng.uniform(15, 30)]) * s
        sl_b, Xb, Yb, Zb = canvas.box(centre - radii, centre + radii)
        canvas.paint(sl_b, _sdf_ellipsoid(Xb, Yb, Zb, centre, radii) < 0, BOWEL)
        if bowel_rng.random() < 0.35:
            gas_r = radii * 0.35
            canvas.paint(sl_b, _sdf_ellipsoid(Xb, Yb, Zb, centre, gas_r) < 0, AIR)

    for spec in _OTHER_MUSCLES.values():
        for side in (1.0, -1.0):
            _paint_swept_muscle(canvas, spec, side, s, w, p.muscle_bulk, 0)
    for name, spec in _MUSCLES.items():
        for side, suffix in ((1.0, "right"), (-1.0, "left")):
            _paint_swept_muscle(canvas, spec, side, s, w, p.muscle_bulk, _LABEL_ID[f"{name}_{suffix}"])

    fill = p.bladder_fill ** (1.0 / 3.0)
    centre = np.array([0.0, 42.0 * s, (-8.0 + 14.0 * p.bladder_fill) * s])
    radii = np.array([40.0, 30.0, 27.0]) * s * fill
    sl_b, Xb, Yb, Zb = canvas.box(centre - radii - 2, centre + radii + 2)
    bladder_sdf = _sdf_ellipsoid(Xb, Yb, Zb, centre, radii)
    canvas.paint(sl_b, bladder_sdf < 2.0, MUSCLE)  # detrusor wall
    canvas.paint(sl_b, bladder_sdf < 0, URINE, _LABEL_ID["bladder"])
    ra, rb = np.array([0.0, -66.0 * s, -50.0 * s]), np.array([0.0, -58.0 * s, 30.0 * s])
    sl_r, Xr, Yr, Zr = canvas.box(np.minimum(ra, rb) - 16 * s, np.maximum(ra, rb) + 16 * s)
    canvas.paint(sl_r, _sdf_capsule(Xr, Yr, Zr, ra, rb, 12.0 * s, 14.0 * s) < 0, BOWEL)
    if p.rectal_gas:
        gas_c = ra + (rb - ra) * 0.6
        canvas.paint(sl_r, _sdf_sphere(Xr, Yr, Zr, gas_c, 7.0 * s) < 0, AIR)


def _paint_bones(canvas: _Canvas, p: SubjectParameters) -> None:
    """Hip joints (cartilage between femoral head and acetabulum), then the pelvis and both femora."""
    s, w, z = p.scale, p.width, canvas.z
    hip_x = 88.0 * s * w
    for side in (1.0, -1.0):
        hip = np.array([side * hip_x, 0.0, 0.0])
        r = p.head_radius_mm + 2.5
        sl_c, Xc, Yc, Zc = canvas.box(hip - r, hip + r)
        canvas.paint(sl_c, _sdf_sphere(Xc, Yc, Zc, hip, r) < 0, CARTILAGE)
    pelvis = _pelvis_sdf(canvas, p)
    whole = (slice(None),) * 3
    _paint_bone(canvas, whole, pelvis, 2.0, _LABEL_ID["pelvis"])
    del pelvis
    for side, pose, suffix in ((1.0, p.femur_right, "right"), (-1.0, p.femur_left, "left")):
        hip = np.array([side * hip_x, 0.0, 0.0])
        lo = np.array([hip[0] - 90 * s if side < 0 else hip[0] - 50 * s, -80 * s, z[0]])
        hi = np.array([hip[0] + 50 * s if side < 0 else hip[0] + 90 * s, 80 * s, 40 * s])
        sl_f, Xf, Yf, Zf = canvas.box(lo, hi)
        sdf, cortex = _femur_sdf(Xf, Yf, Zf, hip, pose, side, p.head_radius_mm, s)
        _paint_bone(canvas, sl_f, sdf, cortex, _LABEL_ID[f"femur_{suffix}"])


def _intensities(
    tissue: np.ndarray, p: SubjectParameters, noise_seed: int, axes: tuple[np.ndarray, ...], extent: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """CT [HU] and T1 MR of a tissue map: per-tissue values with shared texture, blur and noise;
    the MR with a smooth bias field and Rician magnitude noise."""
    x, y, z = axes
    half_x, half_y, half_z, y_centre = extent
    noise = np.random.default_rng(np.random.SeedSequence([int(noise_seed), 1]))
    texture = ndimage.gaussian_filter(noise.standard_normal(tissue.shape, dtype=np.float32), sigma=(1.5, 1.5, 0.6))
    texture *= np.float32(1.0 / max(float(texture.std()), 1e-6))
    hu_table = np.array([-1000.0, p.hu_fat, p.hu_muscle, 35.0, 8.0, p.hu_marrow, p.hu_cortex, 90.0], np.float32)
    hu_texture = np.array([0, 12, 8, 10, 2, 60, 80, 5], np.float32)
    ct = hu_table[tissue] + hu_texture[tissue] * texture
    ct = ndimage.gaussian_filter(ct, sigma=(0.6, 0.6, 0.3))
    ct += noise.normal(0.0, 12.0, size=tissue.shape).astype(np.float32)

    t1_table = np.array([0.0, 900.0, 330.0, 380.0, 150.0, p.t1_marrow, 40.0, 450.0], np.float32)
    t1_texture = np.array([0, 0.05, 0.06, 0.08, 0.03, 0.08, 0.2, 0.05], np.float32)
    mr = t1_table[tissue] * (1.0 + t1_texture[tissue] * texture)
    mr = ndimage.gaussian_filter(mr, sigma=(0.6, 0.6, 0.3))
    u = (x / half_x)[:, None, None]
    v = ((y - y_centre) / half_y)[None, :, None]
    t = ((z - z.mean()) / max(half_z, 1.0))[None, None, :]
    c = p.bias
    mr *= np.exp(c[0] * u + c[1] * v + c[2] * t + c[3] * u * u + c[4] * v * v + c[5] * u * v).astype(np.float32)
    mr *= np.float32(p.t1_gain)
    sigma = np.float32(15.0)
    real = mr + sigma * noise.standard_normal(tissue.shape, dtype=np.float32)
    imag = sigma * noise.standard_normal(tissue.shape, dtype=np.float32)
    mr = np.sqrt(real * real + imag * imag)  # Rician magnitude noise
    return ct, mr


def render_subject(params: SubjectParameters, settings: PhantomSettings, noise_seed: int) -> dict[str, Volume]:
    """Render one subject: ``{"mr", "ct", "mask", "labels"}`` volumes sharing one geometry."""
    p, s = params, params.scale
    dx, dy, dz = settings.spacing
    nx, ny = settings.matrix
    z_lo, z_hi = Z_RANGE_MM[0] * s, Z_RANGE_MM[1] * s
    nz = int(round((z_hi - z_lo) / dz)) + 1
    y_centre = -8.0
    x = ((np.arange(nx) - (nx - 1) / 2) * dx).astype(np.float32)
    y = ((np.arange(ny) - (ny - 1) / 2) * dy + y_centre).astype(np.float32)
    z = (z_lo + np.arange(nz) * dz).astype(np.float32)
    canvas = _Canvas(x, y, z)
    body = _paint_body(canvas, p)
    _paint_soft_organs(canvas, p)
    _paint_bones(canvas, p)
    tissue = canvas.tissue
    outside = ~body
    tissue[outside] = AIR
    canvas.label[outside] = 0
    ct, mr = _intensities(tissue, p, noise_seed, (x, y, z), (0.5 * nx * dx, 0.5 * ny * dy, 0.5 * nz * dz, y_centre))
    ox, oy, oz = p.table_offset_mm
    affine = np.array(
        [[dx, 0, 0, x[0] + ox], [0, dy, 0, y[0] + oy], [0, 0, dz, z[0] + oz], [0, 0, 0, 1]], dtype=np.float64
    )
    return {
        "mr": Volume(mr, affine),
        "ct": Volume(np.clip(ct, -1024, 3071), affine),
        "mask": Volume(body.astype(np.uint8), affine),
        "labels": Volume(canvas.label, affine),
    }


def write_subject(
    out_dir: str | Path, seed: int, index: int, settings: PhantomSettings | None = None
) -> dict[str, Path]:
    """Generate subject ``index`` of cohort ``seed`` into ``out_dir/<subject_id>/``."""
    settings = settings or PhantomSettings()
    subject = subject_ids(index + 1)[index]
    params = sample_subject(seed, index)
    volumes = render_subject(
        params, settings, noise_seed=int(np.random.SeedSequence([int(seed), int(index), 2]).generate_state(1)[0])
    )
    folder = Path(out_dir) / subject
    paths = {}
    for name, dtype in (("mr", np.int16), ("ct", np.int16), ("mask", np.uint8), ("labels", np.uint8)):
        paths[name] = write_volume(folder / f"{name}.nii.gz", volumes[name], dtype)
    return paths


def cohort_table(seed: int, n_subjects: int) -> pd.DataFrame:
    """The sample sheet of a phantom cohort (paths relative to the cohort folder) with its parameters."""
    rows = []
    for index, subject in enumerate(subject_ids(n_subjects)):
        params = asdict(sample_subject(seed, index))
        row = {"subject": subject, **{k: f"{subject}/{k}.nii.gz" for k in ("mr", "ct", "mask", "labels")}}
        for key, value in params.items():
            if isinstance(value, dict):
                row.update({f"{key}_{k}": round(v, 3) for k, v in value.items()})
            elif isinstance(value, (tuple, list)):
                continue
            elif isinstance(value, float):
                row[key] = round(value, 3)
            else:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)


def labels_table() -> pd.DataFrame:
    """Label ids and names, the content of ``labels.tsv``."""
    return pd.DataFrame({"id": list(LABELS), "name": list(LABELS.values())})


def write_tables(out_dir: str | Path, seed: int, n_subjects: int) -> tuple[Path, Path]:
    """Write ``subjects.tsv`` and ``labels.tsv`` of a phantom cohort."""
    out_dir = Path(out_dir)
    subjects = out_dir / "subjects.tsv"
    labels = out_dir / "labels.tsv"
    atomic_write_text(subjects, cohort_table(seed, n_subjects).to_csv(sep="\t", index=False, lineterminator="\n"))
    atomic_write_text(labels, labels_table().to_csv(sep="\t", index=False, lineterminator="\n"))
    return subjects, labels


def write_cohort(
    out_dir: str | Path,
    n_subjects: int,
    seed: int,
    settings: PhantomSettings | None = None,
    progress: bool = True,
    jobs: int = 1,
) -> Path:
    """Generate a whole phantom cohort (subject folders, ``subjects.tsv``, ``labels.tsv``) with ``jobs`` processes."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    out_dir = Path(out_dir)
    jobs = max(1, min(jobs, n_subjects))
    bar = tqdm(total=n_subjects, desc="phantom subjects", unit="subject", disable=not progress)
    if jobs == 1:
        for index in range(n_subjects):
            write_subject(out_dir, seed, index, settings)
            bar.update()
    else:
        with ProcessPoolExecutor(jobs) as pool:
            for _ in pool.map(
                write_subject, [out_dir] * n_subjects, [seed] * n_subjects, range(n_subjects), [settings] * n_subjects
            ):
                bar.update()
    bar.close()
    write_tables(out_dir, seed, n_subjects)
    return out_dir
