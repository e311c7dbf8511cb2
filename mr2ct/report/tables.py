"""Presentation of the result tables: metric names with units, decimals, and the GitHub Markdown
tables of "mean ± sd" cells that the README and the findings show (the numbers: :mod:`mr2ct.evaluation.statistics`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["METRIC_DECIMALS", "METRIC_LABEL", "to_markdown"]

#: Human-readable metric names with units (tables and axis labels).
METRIC_LABEL: dict[str, str] = {
    "empty_prediction": "empty predictions",
    "mae": "MAE [HU]",
    "mae_boundary": "boundary MAE [HU]",
    "psnr": "PSNR [dB]",
    "ssim": "SSIM",
    "dice": "Dice",
    "assd": "ASSD [mm]",
    "assd_mm": "ASSD [mm]",
    "hd95": "HD95 [mm]",
    "hd95_mm": "HD95 [mm]",
}

#: Decimals shown for each metric in Markdown tables.
METRIC_DECIMALS: dict[str, int] = {
    "mae": 1,
    "mae_boundary": 1,
    "psnr": 2,
    "ssim": 3,
    "dice": 3,
    "assd": 2,
    "assd_mm": 2,
    "hd95": 2,
    "hd95_mm": 2,
}


def _format_number(value: float, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    text = f"{value:.{decimals}f}"
    if float(text) == 0.0:
        text = f"{0.0:.{decimals}f}"  # no "-0.0"
    return text.replace("-", "−")


def _auto_decimals(means: np.ndarray) -> int:
    """Three significant digits of the typical magnitude (between 0 and 4 decimals)."""
    finite = np.abs(means[np.isfinite(means)])
    finite = finite[finite > 0]
    if not finite.size:
        return 2
    magnitude = math.floor(math.log10(float(np.median(finite))))
    return int(min(4, max(0, 2 - magnitude)))


def _cell_text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(
    summary: pd.DataFrame,
    metrics: Sequence[str] | None = None,
    by: Sequence[str] | None = None,
    decimals: Mapping[str, int] | None = None,
    labels: Mapping[str, str] | None = None,
    model_labels: Mapping[str, str] | None = None,
    show_n: bool = True,
) -> str:
    """GitHub Markdown table of a :func:`~mr2ct.evaluation.statistics.summary_table` with "mean ± sd" cells.

    Parameters
    ----------
    summary:
        Output of :func:`mr2ct.evaluation.statistics.summary_table`.
    metrics:
        Metrics to show (default: every ``<metric>_mean`` column, in order).
    by:
        Grouping columns shown first (default: the columns before ``n``).
    decimals:
        Decimals per metric (default :data:`METRIC_DECIMALS`; unknown metrics
        get three significant digits of their median magnitude).
    labels:
        Column headers per metric or grouping column (default
        :data:`METRIC_LABEL`, with units; other columns keep their name).
    model_labels:
        Display names for the values of a ``model``/``source`` column.
    show_n:
        Include the ``n`` column.

    Returns
    -------
    str
        The table, one line per row, ending with a newline; a missing sd
        (a single value) shows the mean only, a missing mean shows "–". When a
        metric exists for only ``k`` of the group's ``n`` rows, its cell ends
        with ``(k/n)``: a mean over a smaller set is never shown as if it were
        over all. ``<column>_sum`` columns (see ``counts`` of
        :func:`~mr2ct.evaluation.statistics.summary_table`) are shown as integer columns after the metrics.
    """
    if metrics is None:
        metrics = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]
    metrics = list(metrics)
    if by is None:
        cols = list(summary.columns)
        by = cols[: cols.index("n")] if "n" in cols else []
    by = list(by)
    decimals = {**METRIC_DECIMALS, **(decimals or {})}
    labels = {**METRIC_LABEL, **(labels or {})}
    model_labels = dict(model_labels or {})

    sums = [c[: -len("_sum")] for c in summary.columns if c.endswith("_sum")]
    header = [
        *(labels.get(c, c) for c in by),
        *(["n"] if show_n and "n" in summary else []),
        *(labels.get(m, m) for m in metrics),
        *(labels.get(c, c.replace("_", " ")) for c in sums),
    ]
    numeric = [False] * len(by) + [True] * (len(header) - len(by))
    rows = []
    places = {
        m: decimals[m] if m in decimals else _auto_decimals(summary[f"{m}_mean"].to_numpy(dtype=np.float64))
        for m in metrics
    }
    for _, r in summary.iterrows():
        cells = []
        for c in by:
            v = r[c]
            cells.append(_cell_text(model_labels.get(v, v) if c in ("model", "source") else v))
        if show_n and "n" in summary:
            cells.append(_cell_text(r["n"]))
        cells.extend(_metric_cell(summary, r, m, places[m]) for m in metrics)
        cells.extend(_cell_text(r[f"{c}_sum"]) for c in sums)
        rows.append(cells)
    return _markdown_grid(header, rows, numeric)


def _metric_cell(summary: pd.DataFrame, r: pd.Series, m: str, places: int) -> str:
    """The "mean ± sd" cell of one metric in one row, with ``(k/n)`` when it exists for fewer rows."""
    mean = float(r[f"{m}_mean"])
    sd = float(r[f"{m}_sd"]) if f"{m}_sd" in summary else math.nan
    text = _format_number(mean, places)
    if not math.isnan(mean) and not math.isnan(sd):
        text += f" ± {_format_number(sd, places)}"
    if f"{m}_n" in summary and "n" in summary and int(r[f"{m}_n"]) < int(r["n"]):
        text += f" ({int(r[f'{m}_n'])}/{int(r['n'])})"
    return text


def _markdown_grid(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> str:
    """A padded GitHub Markdown table; numeric columns right-aligned."""
    widths = [max(3, len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"
