"""Smoke tests for mr2ct.report.figures on small synthetic tables: files written, readable, robust to gaps."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from mr2ct.report import figures as F

SIZES = (2, 4, 6)
FOLDS = 2
SUBJECTS = 3
STRUCTURES = ("pelvis", "femur_left", "gluteus_maximus_right", "bladder")
SYNTHESIS_MODELS = (
    "cyclegan",
    "cyclegan_gc",
    "reference_supervised",
    "baseline_constant",
    "baseline_histmatch",
    "reference_resampled",
)


@pytest.fixture(autouse=True)
def low_dpi(monkeypatch):
    """Keep the tests light: 100 dpi PNGs."""
    monkeypatch.setattr(F, "PNG_DPI", 100)


def make_synthesis(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for size in SIZES:
        for model in SYNTHESIS_MODELS:
            for fold in range(FOLDS):
                for s in range(SUBJECTS):
                    mae = rng.uniform(40, 200)
                    rows.append(
                        {
                            "size": size,
                            "model": model,
                            "fold": fold,
                            "subject": f"f{fold}s{s}",
                            "mae": mae,
                            "psnr": 40 - mae / 10,
                            "ssim": rng.uniform(0.5, 0.9),
                            "mae_boundary": 2 * mae,
                        }
                    )
    return pd.DataFrame(rows)


def make_segmentation(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(FOLDS):
        for s in range(SUBJECTS):
            runs = [(np.nan, "real_ct", "real_ct")]
            runs += [(size, model, "synthetic_ct") for size in SIZES for model in ("cyclegan", "cyclegan_gc")]
            for size, model, source in runs:
                for structure in STRUCTURES:
                    dice = rng.uniform(0.4, 1.0)
                    rows.append(
                        {
                            "size": size,
                            "model": model,
                            "fold": fold,
                            "subject": f"f{fold}s{s}",
                            "source": source,
                            "structure": structure,
                            "dice": dice,
                            "assd_mm": (1 - dice) * 10,
                            "hd95_mm": (1 - dice) * 30,
                        }
                    )
    return pd.DataFrame(rows)


def make_losses(seed: int = 0, steps: int = 60) -> dict:
    rng = np.random.default_rng(seed)
    tables = {}
    for size in SIZES:
        for model in ("cyclegan", "cyclegan_gc"):
            for fold in range(FOLDS):
                step = np.arange(1, steps + 1)
                tables[(size, model, fold, 0)] = pd.DataFrame(
                    {
                        "step": step,
                        "loss_g": 10 * np.exp(-step / 20) + rng.normal(0, 0.3, steps) + 3,
                        "adv": rng.uniform(0.5, 1.5, steps),
                        "cycle": np.exp(-step / 30) + 0.1,
                        "identity": 0.0,
                        "gc_loss": 0.5 + 0.3 * np.exp(-step / 25),
                        "loss_d": rng.uniform(0.3, 0.6, steps),
                        "gc_mr_to_ct": rng.uniform(0.2, 0.6, steps),
                        "lr": 2e-4,
                    }
                )
    return tables


def check_written(paths, stem: Path, min_width_px: int = 200) -> None:
    assert sorted(Path(p).suffix for p in paths) == [".pdf", ".png"]
    assert {Path(p).with_suffix("") for p in paths} == {stem}
    for p in paths:
        assert Path(p).is_file() and Path(p).stat().st_size > 1000, p
    pdf = stem.with_suffix(".pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    image = mpimg.imread(stem.with_suffix(".png"))
    height, width = image.shape[:2]
    assert min_width_px <= width <= 5000 and 100 <= height <= 5000
    assert image.std() > 0.01  # not a blank canvas


def test_metric_vs_size_writes_png_and_pdf(tmp_path):
    stem = tmp_path / "mae_vs_training_size"
    paths = F.plot_metric_vs_size(make_synthesis(), "mae", stem, n_boot=200)
    check_written(paths, stem)
    width = mpimg.imread(stem.with_suffix(".png")).shape[1]
    assert width <= 1.1 * F.SINGLE_COLUMN_IN * F.PNG_DPI  # single column


def test_metric_vs_size_copes_with_nan_inf_and_missing_models(tmp_path):
    table = make_synthesis(seed=1)
    table = table[table["model"] != "reference_supervised"].copy()
    table.loc[table.index[::4], "psnr"] = np.nan
    table.loc[table.index[1], "psnr"] = np.inf
    # a size with a single cyclegan subject: no band there
    lone = (table["model"] == "cyclegan") & (table["size"] == 6)
    table = table.drop(table.index[lone][1:])
    stem = tmp_path / "sub" / "psnr_vs_training_size"
    check_written(F.plot_metric_vs_size(table, "psnr", stem, n_boot=100), stem)
    only_refs = table[~table["model"].isin(F.ARMS)]
    stem2 = tmp_path / "boundary_mae_refs_only"
    check_written(F.plot_metric_vs_size(only_refs, "mae_boundary", stem2, n_boot=100), stem2)


def test_metric_vs_size_unknown_column(tmp_path):
    with pytest.raises(KeyError):
        F.plot_metric_vs_size(make_synthesis(), "nope", tmp_path / "x")


def test_segmentation_by_structure(tmp_path):
    table = make_segmentation()
    table.loc[table.index[::7], "dice"] = np.nan
    stem = tmp_path / "dice_by_structure"
    check_written(F.plot_segmentation_by_structure(table, "dice", stem, size=None), stem)
    # a missing arm and an explicit size
    stem2 = tmp_path / "dice_by_structure_size2"
    partial = table[table["model"] != "cyclegan_gc"]
    check_written(F.plot_segmentation_by_structure(partial, "dice", stem2, size=2), stem2)


def test_surface_distances_two_panels(tmp_path):
    table = make_segmentation(seed=2)
    table.loc[table["structure"] == "bladder", ["assd_mm", "hd95_mm"]] = np.nan  # empty masks
    stem = tmp_path / "surface_distance_by_structure"
    check_written(F.plot_surface_distances(table, stem), stem)
    width = mpimg.imread(stem.with_suffix(".png")).shape[1]
    assert width > 1.5 * F.SINGLE_COLUMN_IN * F.PNG_DPI  # double column


def test_training_curves(tmp_path):
    tables = make_losses()
    tables[(6, "cyclegan", 0, 0)].loc[::5, "gc_loss"] = np.nan
    stem = tmp_path / "training_curves"
    check_written(F.plot_training_curves(tables, stem), stem)
    # one model missing entirely
    only_gc = {k: v for k, v in tables.items() if k[1] == "cyclegan_gc"}
    stem2 = tmp_path / "training_curves_gc_only"
    check_written(F.plot_training_curves(only_gc, stem2, size=4), stem2)


def test_read_loss_tables(tmp_path):
    table = make_losses(steps=5)[(2, "cyclegan", 0, 0)]
    path = tmp_path / "results" / "models" / "4" / "cyclegan_gc" / "fold1" / "losses.tsv"
    path.parent.mkdir(parents=True)
    table.to_csv(path, sep="\t", index=False)
    tables = F.read_loss_tables([path], [(4, "cyclegan_gc", 1, 0)])
    assert list(tables) == [(4, "cyclegan_gc", 1, 0)]
    pd.testing.assert_frame_equal(tables[(4, "cyclegan_gc", 1, 0)], table, check_dtype=False)
    with pytest.raises(ValueError, match="1 loss table"):
        F.read_loss_tables([path], [])


@pytest.mark.parametrize(
    ("name", "pretty"),
    [
        ("gluteus_maximus_right", "gluteus maximus R"),
        ("femur_left", "femur L"),
        ("pelvis", "pelvis"),
        ("obturator_internus_left", "obturator internus L"),
        ("bladder", "bladder"),
    ],
)
def test_pretty_structure(name, pretty):
    assert F.pretty_structure(name) == pretty


def test_model_styles_are_distinct_and_complete():
    for model in SYNTHESIS_MODELS + ("real_ct",):
        assert {"color", "label", "marker", "linestyle"} <= set(F.MODEL_STYLE[model])
    colours = [F.MODEL_STYLE[m]["color"] for m in SYNTHESIS_MODELS]
    assert len(set(colours)) == len(colours)


def test_render_all_writes_the_workflow_figures(tmp_path):
    written = F.render_all(make_synthesis(), None, {}, tmp_path, seed=3)
    stems = {p.stem for p in written}
    assert stems == {F.FIGURE_STEMS[k] for k in ("mae", "psnr", "ssim", "mae_boundary", "training_curves")}
    assert all(p.parent == tmp_path and p.stat().st_size > 0 for p in written)
