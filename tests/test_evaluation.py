"""Experiment tables: scores of predictions, reference predictions, segmentation rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mr2ct.data.cohort import SubjectFiles
from mr2ct.data.io import Volume, read_volume, write_volume
from mr2ct.data.phantom import LABELS
from mr2ct.data.preprocess import PreprocessSettings, preprocess_to_cache
from mr2ct.evaluation.metrics import bone_label_ids, bone_mask, mae
from mr2ct.evaluation.scoring import (
    concat_parts,
    quantile_map,
    reference_predictions,
    segmentation_rows,
    synthesis_rows,
    write_table,
)


@pytest.fixture(scope="module")
def subjects(tiny_cohort):
    return [
        SubjectFiles(f.name, *(f / f"{m}.nii.gz" for m in ("mr", "ct", "mask", "labels")))
        for f in sorted(p for p in tiny_cohort.iterdir() if p.is_dir())
    ]


@pytest.fixture(scope="module")
def caches(subjects, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    return [preprocess_to_cache(s, PreprocessSettings(image_size=32), out / f"{s.subject}.npz") for s in subjects]


def test_perfect_synthesis_scores_zero_error(subjects, tmp_path):
    for s in subjects[:2]:
        write_volume(tmp_path / f"{s.subject}.nii.gz", read_volume(s.ct), np.int16)
    rows = synthesis_rows(tmp_path, subjects[:2], 4, "cyclegan", 1, LABELS, band_mm=4.0)
    assert list(rows["subject"]) == [s.subject for s in subjects[:2]]
    assert (rows["mae"] == 0).all() and (rows["mae_boundary"] == 0).all()
    assert np.isinf(rows["psnr"]).all() and np.allclose(rows["ssim"], 1.0)


def test_reference_predictions(subjects, caches):
    test, train_mr, train_ct = subjects[:2], subjects[2:3], subjects[3:4]
    table = reference_predictions(
        test, caches[:2], list(zip(train_mr, caches[2:3])), train_ct, 2, 0, LABELS, band_mm=4.0
    )
    assert sorted(set(table["model"])) == ["baseline_constant", "baseline_histmatch", "reference_resampled"]
    # the constant baseline is the training CT's mean body HU, everywhere in the body
    ct_train = read_volume(train_ct[0].ct).data[read_volume(train_ct[0].mask).data > 0]
    ref = read_volume(test[0].ct).data
    body = read_volume(test[0].mask).data > 0
    expected = mae(ref, np.full_like(ref, ct_train.mean()), body)
    got = table.query("model == 'baseline_constant' and subject == @test[0].subject")["mae"].item()
    assert got == pytest.approx(expected, rel=1e-4)

    # histogram matching, computed independently: the test MR's body-percentile normalisation (from
    # its cache), then the train MR body quantiles -> train CT body quantiles, monotone increasing
    def normalised_mr(s, cache):
        lo, hi = np.load(cache)["mr_range"]
        return np.clip(2.0 * (read_volume(s.mr).data - lo) / (hi - lo) - 1.0, -1.0, 1.0)

    q = np.linspace(0, 1, 1001)
    mr_train = normalised_mr(train_mr[0], caches[2])[read_volume(train_mr[0].mask).data > 0]
    matched = np.interp(normalised_mr(test[0], caches[0]), np.quantile(mr_train, q), np.quantile(ct_train, q))
    got = table.query("model == 'baseline_histmatch' and subject == @test[0].subject")["mae"].item()
    assert got == pytest.approx(mae(ref, matched, body), rel=1e-4)
    by_model = table.groupby("model")["mae"].mean()
    # the real CT at training resolution is far better than knowing only the mean
    assert by_model["reference_resampled"] < 0.8 * by_model["baseline_constant"]


def test_bone_mask_uses_labels_or_threshold():
    ct = np.array([[[-100.0, 500.0, 1500.0]]])
    labels = np.array([[[0, 1, 4]]], dtype=np.uint8)
    assert bone_mask(ct, labels, bone_label_ids(LABELS)).tolist() == [[[False, True, False]]]
    assert bone_mask(ct, None, []).tolist() == [[[False, True, True]]]


def test_segmentation_rows_and_table(subjects, tmp_path):
    s = subjects[0]
    labels = read_volume(s.labels, dtype=np.uint8)
    perfect = write_volume(tmp_path / "perfect.nii.gz", labels, np.uint8)
    shifted = labels.data.copy()
    shifted[shifted == 1] = 0  # the pelvis is missed entirely
    missed = write_volume(tmp_path / "missed.nii.gz", Volume(shifted, labels.affine, labels.disk_axcodes), np.uint8)
    a = segmentation_rows({s.subject: perfect}, [s], LABELS, 2, "cyclegan", 0, "synthetic_ct")
    b = segmentation_rows({s.subject: missed}, [s], LABELS, None, "real_ct", 0, "real_ct")
    assert (a["dice"] == 1).all() and (a["assd_mm"] == 0).all()
    pelvis = b.set_index("structure").loc["pelvis"]
    assert pelvis["dice"] == 0 and np.isnan(pelvis["assd_mm"]) and pelvis["empty_prediction"] == 1
    assert (b.set_index("structure").drop(index="pelvis")["empty_prediction"] == 0).all()
    write_table(a, tmp_path / "a.csv")
    write_table(b, tmp_path / "b.csv")
    out = concat_parts([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "all.csv", "segmentation")
    text = out.read_text()
    header = "size,model,fold,replicate,subject,source,structure,dice,assd_mm,hd95_mm,empty_prediction"
    assert text.splitlines()[0] == header
    assert len(text.splitlines()) == 1 + 2 * len(LABELS)


@settings(max_examples=60, deadline=None)
@given(
    source=hnp.arrays(np.float64, st.integers(2, 400), elements=st.floats(-1, 1)),
    target=hnp.arrays(np.float64, st.integers(2, 400), elements=st.floats(-1024, 3000)),
)
def test_histogram_matching_map_is_monotone_and_matches_the_target_range(source, target):
    assume(np.ptp(source) > 0)  # a constant MR has no histogram to match (validation refuses it)
    xs, ys = quantile_map(source, target, n_quantiles=101)
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(ys) >= 0)  # increasing: never an inverted map
    mapped = np.interp(source, xs, ys)
    assert mapped.min() >= target.min() - 1e-9 and mapped.max() <= target.max() + 1e-9
    # order-preserving: a brighter MR voxel never gets a lower HU (an inverted map would)
    order = np.argsort(source, kind="stable")
    assert np.all(np.diff(mapped[order]) >= -1e-9)
    assert np.interp(source.max(), xs, ys) == pytest.approx(target.max())
