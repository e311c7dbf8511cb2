"""Validation of a discovered cohort: each subject's volumes read and judged before any job.

:func:`validate_subject` checks integrity, content, geometry and plausibility (the thresholds
are the config keys ``data.checks``); :func:`validate_cohort` and :func:`validate_changed` (the
workflow's parse, before any job; only subjects whose files changed are read again) add that
no two subjects share a scan's content.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mr2ct.data.cohort import Cohort, DicomSeries, Preparation, SubjectFiles, default_checks, read_label_table
from mr2ct.data.io import InputError, check_file, read_volume

__all__ = [
    "check_sources",
    "shared_content",
    "validate_changed",
    "validate_cohort",
    "validate_subject",
    "write_validation_report",
]

#: CT below this (HU) is air: in a body mask (at most data.checks.mask_max_air_fraction of it) and
#: around it (the CT's tissue is what is at or above it, data.checks.mask_min_tissue_coverage)
AIR_HU = -500.0
#: HU of anything in a body: air (about −1000, with noise) up to the top of the 12-bit CT scale (3071);
#: more than data.checks.ct_max_fraction_outside_hu_range of the body outside it is not HU
BODY_HU_RANGE = (-1100.0, 3100.0)


def _percentiles(values: np.ndarray) -> tuple[float, float, float]:
    p1, median, p99 = np.percentile(values, (1, 50, 99))
    return float(p1), float(median), float(p99)


def _hu_hint(median: float, p1: float, p99: float) -> str:
    """The likeliest reason why a CT is not in HU, from where its body and its extremes lie."""
    if p99 > 5000 or p1 < -5000:
        return (
            "Values this far out look like tenths of HU or another unit (air would be about -10000, bone up to "
            "20000): store HU (e.g. scl_slope 0.1)."
        )
    if -1300 <= median <= -700:
        return (
            "A body at about -1000 HU (air at about -2048) means the -1024 offset was applied twice: remove the "
            "extra subtraction or scl_inter."
        )
    if 700 <= median <= 1300:
        return "A body at about +1000 HU (air at about 0) means the CT is stored 0-based: scl_inter -1024 is missing."
    return "Expected air at about -1000 HU, soft tissue at 0 to 60 HU and bone up to about 2000 HU."


def validate_subject(
    files: SubjectFiles, label_ids: set[int] | None, tolerance_mm: float = 0.01, checks: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Read and check one subject's volumes; return a summary row.

    Checks: every file is a readable 3D NIfTI of real scalar voxels without
    NaN/Inf, with an intact gzip stream, a spatial unit of mm, a qform or sform
    (both agreeing when both are set), a voxel size and a number of voxels along
    every axis in the ranges of ``checks``; no two of its files have the same
    content; MR, mask and labels share the CT's shape, spacing, origin and
    direction within ``tolerance_mm`` (direction cosines within 1e-3); the mask
    is binary, not empty, a body mask (little air, most of the CT's tissue
    inside); the CT is in Hounsfield units judged by the body (its median and
    the share of implausible values); label ids are in the label table and the
    label map is not empty, lies in the body and spans enough of its slices.
    ``checks`` are the thresholds of config keys ``data.checks`` (defaults where
    not given). Raises :class:`InputError` naming the subject and file.
    """
    return _validate_subject(files, label_ids, tolerance_mm, checks)[0]


def _fail(subject: str, path: Path, what: str) -> InputError:
    return InputError(f"subject '{subject}': {path}: {what}")


def _read_role(subject: str, name: str, path: Path, tolerance_mm: float, limits: dict[str, Any]):
    """One role's volume, read and checked on its own (finite, informative, scan-like voxels and
    thickness), with the SHA-256 of its file and of its voxel array."""
    try:
        volume = read_volume(path)
        file_sha = check_file(path, tolerance_mm)
    except InputError as exc:
        raise InputError(f"subject '{subject}': {exc}") from exc
    if not np.isfinite(volume.data).all():
        bad = int((~np.isfinite(volume.data)).sum())
        raise _fail(subject, path, f"{bad} voxel(s) are NaN or infinite")
    if name in ("mr", "ct") and volume.data.min() == volume.data.max():
        raise _fail(subject, path, f"the volume carries no information: every voxel is {float(volume.data.min()):g}")
    spacing = np.asarray(volume.spacing)
    if spacing.min() < limits["min_spacing_mm"] or spacing.max() > limits["max_spacing_mm"]:
        raise _fail(
            subject,
            path,
            f"voxel size {np.round(spacing, 6).tolist()} mm is not that of a scan (expected "
            f"{limits['min_spacing_mm']:g} to {limits['max_spacing_mm']:g} mm per axis, data.checks.min_spacing_mm "
            "and max_spacing_mm): a voxel size like 0.001 is in metres, one like 1000 in micrometres; "
            "rewrite the geometry in mm",
        )
    thinnest = int(np.argmin(volume.data.shape))
    if volume.data.shape[thinnest] < limits["min_slices"]:
        raise _fail(
            subject,
            path,
            f"the volume is too thin: shape {volume.data.shape} has {volume.data.shape[thinnest]} voxel(s) "
            f"along axis {thinnest} (expected at least {limits['min_slices']}, data.checks.min_slices): a "
            "single slice or a thin slab is not a cohort volume",
        )
    return volume, (file_sha, hashlib.sha256(volume.data.tobytes()).hexdigest())


def _check_distinct_roles(files: SubjectFiles, digests: dict[str, tuple[str, str]]) -> None:
    """No two roles of one subject hold the same file bytes or the same voxel values."""
    roles = list(digests)
    for i, first in enumerate(roles):
        for second in roles[i + 1 :]:
            same = [
                what
                for k, what in enumerate(("bytes (SHA-256)", "voxel values"))
                if digests[first][k] == digests[second][k]
            ]
            if same:
                raise _fail(
                    files.subject,
                    files.paths()[second],
                    f"its {second} has the same {same[0]} as its {first} ({files.paths()[first]}); each role needs "
                    "its own scan (a file copied under the wrong name?)",
                )


def _check_on_ct_grid(files: SubjectFiles, volumes: dict[str, Any], tolerance_mm: float) -> None:
    """Every role on the CT's voxel grid: shape, spacing and origin within the tolerance, same direction."""
    ct = volumes["ct"]
    for name, volume in volumes.items():
        if name == "ct":
            continue
        path = files.paths()[name]

        def fail(what: str, path: Path = path, name: str = name) -> InputError:
            hint = (
                "; an MR acquired on its own grid must be registered to its CT first: set config key "
                "data.registration: rigid (or affine), or run mr2ct register MR CT --out FOLDER (README, 'Your own "
                "cohort from DICOM')"
                if name == "mr"
                else ""
            )
            return _fail(files.subject, path, what + hint)

        if volume.data.shape != ct.data.shape:
            raise fail(f"shape {volume.data.shape} differs from the CT's {ct.data.shape} ({files.ct})")
        spacing_diff = np.abs(np.subtract(volume.spacing, ct.spacing)).max()
        if spacing_diff > tolerance_mm:
            raise fail(f"spacing {volume.spacing} differs from the CT's {ct.spacing} by {spacing_diff:.4g} mm")
        origin_diff = np.abs(np.subtract(volume.origin, ct.origin)).max()
        if origin_diff > tolerance_mm:
            raise fail(f"origin {volume.origin} differs from the CT's {ct.origin} by {origin_diff:.4g} mm")
        direction_diff = np.abs(volume.direction - ct.direction).max()
        if direction_diff > 1e-3:
            raise fail(f"direction differs from the CT's by {direction_diff:.4g} (cosines)")


def _check_mask(files: SubjectFiles, mask: np.ndarray) -> None:
    """The body mask is binary and not empty."""
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        raise _fail(files.subject, files.mask, f"mask must hold only 0 and 1, found values {values[:8].tolist()}")
    if int(mask.sum()) == 0:
        raise _fail(files.subject, files.mask, "body mask is empty")


def _check_hu_and_body(files: SubjectFiles, ct_data: np.ndarray, body: np.ndarray, limits: dict[str, Any]) -> None:
    """The CT is in Hounsfield units, judged by the body, and the mask outlines the body."""

    def fail(path: Path, what: str) -> InputError:
        return _fail(files.subject, path, what)

    ct_min = float(ct_data.min())
    if ct_min > limits["ct_min_hu_ceiling"]:
        raise fail(
            files.ct,
            f"CT does not look like Hounsfield units: minimum {ct_min:.0f} (> {limits['ct_min_hu_ceiling']:.0f}); "
            "air should be about -1000. Raw scanner values (e.g. 0..4095) need scl_slope/scl_inter (typically "
            "intercept -1024)",
        )
    # HU judged by the body, not the minimum (padding of -1024, -2048 or -3024 is normal): a constant
    # minimum is padding and left out of the share of values that no body has
    inside = ct_data[body]
    p1, median, p99 = _percentiles(inside)
    core = inside[inside != ct_min]
    low, high = BODY_HU_RANGE
    outside_range = float(((core < low) | (core > high)).mean()) if core.size else 0.0
    where = f"inside the body mask ({files.mask}): median {median:.0f} HU, 1st to 99th percentile {p1:.0f} to {p99:.0f}"
    median_range = (
        f"(expected a median of {limits['ct_body_median_min_hu']:.0f} to {limits['ct_body_median_max_hu']:.0f} HU, "
        "data.checks.ct_body_median_min_hu and _max_hu"
    )
    if outside_range > limits["ct_max_fraction_outside_hu_range"]:
        raise fail(
            files.ct,
            f"CT does not look like Hounsfield units: {outside_range:.0%} of the voxels inside the body mask lie "
            f"outside {low:.0f} to {high:.0f} HU, where everything in a body lies (at most "
            f"{limits['ct_max_fraction_outside_hu_range']:.0%} may, for metal; "
            f"data.checks.ct_max_fraction_outside_hu_range); {where}. {_hu_hint(median, p1, p99)}",
        )
    if median > limits["ct_body_median_max_hu"]:
        raise fail(
            files.ct,
            f"CT does not look like Hounsfield units {where} {median_range}: soft tissue is 0 to 60 HU). "
            f"{_hu_hint(median, p1, p99)} (Or the mask covers only bone, not the body outline.)",
        )
    air = float((inside < AIR_HU).mean())
    if air > limits["mask_max_air_fraction"]:
        twice = -1300 <= median <= -700 and float(np.percentile(ct_data[~body], 50) if (~body).any() else 0) < -1500
        raise fail(
            files.mask,
            f"not a body mask: {air:.0%} of its voxels are air in the CT (< {AIR_HU:.0f} HU; "
            f"a body mask may hold at most {limits['mask_max_air_fraction']:.0%}, data.checks.mask_max_air_fraction)"
            + (f"; or the CT ({files.ct}) is not in HU: {_hu_hint(median, p1, p99)}" if twice else ""),
        )
    if median < limits["ct_body_median_min_hu"]:
        raise fail(
            files.ct,
            f"CT does not look like Hounsfield units {where} {median_range}). {_hu_hint(median, p1, p99)}",
        )
    tissue = ct_data >= AIR_HU
    coverage = float((tissue & body).sum() / max(int(tissue.sum()), 1))
    if coverage < limits["mask_min_tissue_coverage"]:
        raise fail(
            files.mask,
            f"the body mask misses most of the body: it holds {coverage:.0%} of the CT's tissue voxels (>= "
            f"{AIR_HU:.0f} HU; expected at least {limits['mask_min_tissue_coverage']:.0%}, "
            "data.checks.mask_min_tissue_coverage): is it cropped, shifted, or another subject's mask?",
        )


def _check_labels(
    files: SubjectFiles, labels: np.ndarray, body: np.ndarray, label_ids: set[int] | None, limits: dict[str, Any]
) -> list[int]:
    """The label map: integer ids of the label table, not empty, inside the body, over enough slices.
    Returns the label ids present."""

    def fail(what: str) -> InputError:
        return _fail(files.subject, files.labels, what)

    if not np.array_equal(labels, np.round(labels)):
        raise fail("label values must be integers")
    present = [int(v) for v in np.unique(labels) if v != 0]
    if label_ids is not None:
        unknown = sorted(set(present) - set(label_ids))
        if unknown:
            raise fail(f"label id(s) {unknown} are not in the label table")
    labelled = labels != 0
    if not present:
        raise fail("the label map is empty (every voxel is 0); expected the structures of the label table")
    off_body = float((labelled & ~body).sum() / labelled.sum())
    if off_body > limits["labels_max_outside_mask_fraction"]:
        raise fail(
            f"{off_body:.0%} of the labelled voxels lie outside the body mask ({files.mask}; at most "
            f"{limits['labels_max_outside_mask_fraction']:.0%}, data.checks.labels_max_outside_mask_fraction): "
            "the label map does not fit this CT (another subject's, shifted or flipped?)",
        )
    label_slices = int(labelled.any(axis=(0, 1)).sum())
    body_slices = int(body.any(axis=(0, 1)).sum())
    if label_slices < limits["labels_min_slice_fraction"] * body_slices:
        raise fail(
            f"the labels cover {label_slices} of the {body_slices} axial slices that hold the body (expected at "
            f"least {limits['labels_min_slice_fraction']:.0%}, data.checks.labels_min_slice_fraction): a partial "
            "annotation cannot score a segmentation of the whole volume",
        )
    return present


def _validate_subject(
    files: SubjectFiles, label_ids: set[int] | None, tolerance_mm: float, checks: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, tuple[str, str]]]:
    """:func:`validate_subject`, and the SHA-256 of each role's file and voxel array (canonical float32)."""
    subject = files.subject
    limits = {**default_checks(), **(checks or {})}
    volumes, digests = {}, {}
    for name, path in files.paths().items():
        volumes[name], digests[name] = _read_role(subject, name, path, tolerance_mm, limits)
    _check_distinct_roles(files, digests)
    _check_on_ct_grid(files, volumes, tolerance_mm)
    ct, mask = volumes["ct"], volumes["mask"].data
    _check_mask(files, mask)
    body = mask > 0
    _check_hu_and_body(files, ct.data, body, limits)
    mr_body = volumes["mr"].data[body]
    if mr_body.min() == mr_body.max():
        raise _fail(
            subject,
            files.mr,
            f"the MR carries no information inside the body mask: every voxel is {float(mr_body.min()):g}",
        )
    present = _check_labels(files, volumes["labels"].data, body, label_ids, limits) if "labels" in volumes else []
    row = {
        "subject": subject,
        "shape": "x".join(map(str, ct.data.shape)),
        "spacing_mm": ",".join(f"{v:.4g}" for v in ct.spacing),
        "origin_mm": ",".join(f"{v:.2f}" for v in ct.origin),
        "orientation": "".join(ct.disk_axcodes),
        "ct_min_hu": round(float(ct.data.min()), 1),
        "ct_max_hu": round(float(ct.data.max()), 1),
        "mr_p99": round(float(np.percentile(volumes["mr"].data[body], 99)), 2),
        "mask_voxels": int(mask.sum()),
        "labels": ",".join(map(str, present)),
    }
    return row, digests


def check_sources(
    preparation: Preparation, tolerance_mm: float = 0.01, checks: dict[str, Any] | None = None
) -> dict[str, tuple[str, str]]:
    """What can be judged of a subject's given files before the workflow prepares them (converts its
    DICOM series, derives its mask, registers its MR): each NIfTI file on its own (integrity, finite and
    informative voxels, scan-like voxel size and extent) and each DICOM series from its headers (one
    series, evenly spaced slices, one orientation). The rest of :func:`validate_subject` is judged once
    the files exist (rule ``validate_prepared``). Returns the SHA-256 digests of the NIfTI files."""
    from mr2ct.data.dicom import inspect_series

    limits = {**default_checks(), **(checks or {})}
    digests = {}
    for role, source in preparation.sources.items():
        if isinstance(source, DicomSeries):
            try:
                inspect_series(source.folder, source.uid)
            except InputError as exc:
                raise InputError(f"subject '{preparation.subject}': {role} series: {exc}") from exc
        else:
            digests[role] = _read_role(preparation.subject, role, source, tolerance_mm, limits)[1]
    return digests


def _given_file(cohort: Cohort, subject: str, role: str) -> object:
    """The file a subject's cohort gives for ``role`` (before any preparation)."""
    prepared = cohort.preparation.get(subject)
    return prepared.sources[role] if prepared is not None else cohort[subject].paths()[role]


def _prepared_missing(cohort: Cohort, subject: str) -> bool:
    """Is ``subject`` one whose files the workflow has still to make?"""
    return subject in cohort.preparation and not all(p.exists() for p in cohort[subject].paths().values())


def shared_content(cohort: Cohort, digests: dict[str, dict[str, tuple[str, str]]]) -> dict[str, str]:
    """Subjects whose files have the content of another subject's (SHA-256 of the file, or of the MR/CT voxels):
    ``{subject: error}`` for each later subject of a pair, naming the earlier one."""
    first_seen: dict[tuple[int, str], tuple[str, str]] = {}
    pairs: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for files in cohort.subjects:
        for role, digest in digests.get(files.subject, {}).items():
            for k in (0, 1) if role in ("mr", "ct") else (0,):
                key = (k, digest[k])
                if key not in first_seen:
                    first_seen[key] = (files.subject, role)
                    continue
                other, other_role = first_seen[key]
                if other != files.subject:
                    pairs.setdefault((other, files.subject), []).append((other_role, role, k))
                    break
    errors = {}
    for (first, second), items in pairs.items():
        roles = ", ".join(r if r == fr else f"{r} (its {fr})" for fr, r, _ in items)
        other_role, role, k = items[0]
        what = "the same bytes (SHA-256 of the files)" if k == 0 else "the same voxel values"
        errors[second] = (
            f"subject '{second}': its {roles} have {what} as those of subject '{first}' "
            f"({_given_file(cohort, second, role)} and {_given_file(cohort, first, other_role)}): one scan cannot "
            "serve two subjects (a copied folder?); remove the copy or give the subject its own files"
        )
    return errors


def validate_cohort(cohort: Cohort, tolerance_mm: float = 0.01, progress: bool = False) -> pd.DataFrame:
    """Validate every subject (see :func:`validate_subject`, with the cohort's ``data.checks``) and that no two
    subjects share a scan's content (:func:`shared_content`); return the summary table. A subject whose
    files the workflow has yet to prepare is judged by :func:`check_sources`."""
    from tqdm import tqdm

    label_ids = set(read_label_table(cohort.labels_table)) if cohort.labels_table else None
    rows, errors, digests = {}, {}, {}
    for files in tqdm(cohort.subjects, desc="validating", unit="subject", disable=not progress):
        try:
            if _prepared_missing(cohort, files.subject):  # only what can be judged before the workflow runs
                preparation = cohort.preparation[files.subject]
                digests[files.subject] = check_sources(preparation, tolerance_mm, cohort.checks)
                rows[files.subject] = {"subject": files.subject, "to_prepare": "; ".join(preparation.steps())}
                continue
            rows[files.subject], digests[files.subject] = _validate_subject(
                files, label_ids, tolerance_mm, cohort.checks
            )
        except InputError as exc:
            errors[files.subject] = str(exc)
    for subject, error in shared_content(cohort, digests).items():
        errors.setdefault(subject, error)
    if errors:
        listed = [errors[s] for s in cohort.ids if s in errors]
        raise InputError(
            f"{len(errors)} of {len(cohort.subjects)} subject(s) failed validation:\n  " + "\n  ".join(listed)
        )
    return pd.DataFrame(list(rows.values()))


VALIDATION_CACHE_FORMAT = 2


def _file_state(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _states(cohort: Cohort, files: SubjectFiles) -> dict[str, list]:
    """Role -> the given file (or DICOM series) with the size, modification and status-change times of each file."""
    prepared = cohort.preparation.get(files.subject)
    if prepared is None:
        return {role: [str(path), *_file_state(path)] for role, path in files.paths().items()}
    out: dict[str, list] = {"prepared": prepared.steps()}  # a subject judged by check_sources only
    for role, source in prepared.sources.items():
        paths = source.files() if isinstance(source, DicomSeries) else [source]
        out[role] = [str(source), *(v for path in paths for v in (path.name, *_file_state(path)))]
    return out


def validate_changed(cohort: Cohort, tolerance_mm: float, cache: str | os.PathLike, progress: bool = True) -> int:
    """Validate every subject whose files changed since they last passed; return how many were read.

    The gate the workflow runs when it is parsed, before any job: a subject is
    re-read when the size, modification or status-change time of one of its
    files differs from when it passed (or when the label table, the tolerance
    or ``data.checks`` changed); passing subjects are remembered in ``cache``
    (JSON, written atomically) with the SHA-256 of their files and voxels, so
    that a changed subject is also compared with every unchanged one (no two
    subjects may share a scan). Raises :class:`InputError` listing every failing
    subject with its file; nothing is remembered for them. Because no job
    fails, a bad input never invalidates finished results: once it is fixed
    (or restored byte for byte) Snakemake reruns only what its content changes.
    """
    import json

    from tqdm import tqdm

    from mr2ct.data.io import atomic_write_text

    cache = Path(cache)
    label_sha = hashlib.sha256(Path(cohort.labels_table).read_bytes()).hexdigest() if cohort.labels_table else None
    checks = {**default_checks(), **cohort.checks}
    context = {
        "format": VALIDATION_CACHE_FORMAT,
        "tolerance_mm": tolerance_mm,
        "labels_table_sha256": label_sha,
        "checks": dict(sorted(checks.items())),
    }
    try:
        stored = json.loads(cache.read_text())
    except (OSError, ValueError):
        stored = {}
    same_context = {k: stored.get(k) for k in context} == context
    passed = stored.get("subjects", {}) if same_context else {}
    digests = (
        {s: {r: tuple(d) for r, d in v.items()} for s, v in stored.get("digests", {}).items()} if same_context else {}
    )
    label_ids = set(read_label_table(cohort.labels_table)) if cohort.labels_table else None
    states = {s.subject: _states(cohort, s) for s in cohort.subjects}
    todo = [s for s in cohort.subjects if passed.get(s.subject) != states[s.subject] or s.subject not in digests]
    errors = {}
    for files in tqdm(
        todo, desc="mr2ct: validating the cohort", unit="subject", disable=not (progress and todo), leave=False
    ):
        try:
            if files.subject in cohort.preparation:  # its files are made by jobs: judge what is given
                digests[files.subject] = check_sources(cohort.preparation[files.subject], tolerance_mm, checks)
            else:
                _, digests[files.subject] = _validate_subject(files, label_ids, tolerance_mm, checks)
            passed[files.subject] = states[files.subject]
        except InputError as exc:
            passed.pop(files.subject, None)
            digests.pop(files.subject, None)
            errors[files.subject] = str(exc)
    for subject, error in shared_content(cohort, {s: digests[s] for s in states if s in digests}).items():
        passed.pop(subject, None)
        digests.pop(subject, None)
        errors.setdefault(subject, error)
    kept = {subject: passed[subject] for subject in states if subject in passed}
    kept_digests = {subject: {r: list(d) for r, d in digests[subject].items()} for subject in kept}
    if todo or errors or kept != stored.get("subjects") or kept_digests != stored.get("digests"):
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            cache,
            json.dumps({**context, "subjects": kept, "digests": kept_digests}, indent=1, sort_keys=True) + "\n",
        )
    if errors:
        listed = [errors[s] for s in cohort.ids if s in errors]
        raise InputError(
            f"{len(errors)} of {len(cohort.subjects)} subject(s) failed validation (nothing was run; "
            "fix or replace the files named below and start the workflow again):\n  " + "\n  ".join(listed)
        )
    return len(todo)


def write_validation_report(
    subjects: dict[str, dict[str, str]],
    labels_table: str | os.PathLike | None,
    out: str | os.PathLike,
    tolerance_mm: float,
    checks: dict[str, Any],
) -> Path:
    """Validate the volumes ``subjects`` maps (subject → role → file; roles mr, ct, mask and, with a
    ``labels_table``, labels) and write the per-subject summary TSV (nothing is written on failure)."""
    from mr2ct.data.io import atomic_write_text

    files = tuple(
        SubjectFiles(
            subject,
            Path(paths["mr"]),
            Path(paths["ct"]),
            Path(paths["mask"]),
            Path(paths["labels"]) if paths.get("labels") else None,
        )
        for subject, paths in subjects.items()
    )
    cohort = Cohort(files, Path(labels_table) if labels_table else None, checks={**default_checks(), **checks})
    table = validate_cohort(cohort, tolerance_mm)
    return atomic_write_text(out, table.to_csv(sep="\t", index=False, lineterminator="\n"))
