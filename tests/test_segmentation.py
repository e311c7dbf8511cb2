"""CT segmentation network: determinism, bit-identical resume, learning, prediction geometry, refused inputs."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from mr2ct.data.io import InputError, Volume, read_volume, write_volume
from mr2ct.data.preprocess import load_preprocessed, normalise_ct
from mr2ct.models.resumable import TrainingInterrupted, load_checkpoint, save_checkpoint
from mr2ct.segmentation.segmenter import (
    SegmentationSettings,
    load_segmenter,
    predict_probabilities,
    segment_ct,
    segment_files,
    segmentation_loss,
    train_segmentation,
)

TINY = dict(steps=8, batch_size=4, base=4, depth=2, eval_every=4, checkpoint_every=3, seed=3, n_classes=13)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks gain nothing from threads; one keeps the module fast on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(caches, tmp_path_factory):
    """A segmenter trained for 40 steps (shared by the learning and prediction tests)."""
    out = tmp_path_factory.mktemp("segrun")
    settings = SegmentationSettings(
        steps=40, batch_size=4, base=8, depth=2, lr=3e-3, eval_every=20, checkpoint_every=100, seed=1
    )
    return train_segmentation(settings, caches[:2], [caches[3]], out, progress=False)


def _weights(path):
    return load_segmenter(path).state_dict()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_same_settings_give_identical_weights(caches, tmp_path):
    settings = SegmentationSettings(**TINY)
    a = train_segmentation(settings, caches[:2], [caches[3]], tmp_path / "a", progress=False)
    b = train_segmentation(settings, caches[:2], [caches[3]], tmp_path / "b", progress=False)
    _assert_same(_weights(a), _weights(b))
    c = train_segmentation(
        dataclasses.replace(settings, seed=4), caches[:2], [caches[3]], tmp_path / "c", progress=False
    )
    assert not torch.equal(_weights(a)["head.weight"], _weights(c)["head.weight"])
    for name in ("losses.tsv", "validation.tsv", "loss_curves.png"):
        assert (tmp_path / "a" / name).is_file()
    assert list(pd.read_csv(tmp_path / "a/losses.tsv", sep="\t").columns) == ["step", "loss", "ce", "dice_loss", "lr"]
    validation = pd.read_csv(tmp_path / "a/validation.tsv", sep="\t")
    assert list(validation.columns) == ["step", "mean_dice"] and list(validation["step"]) == [0, 4, 8]
    stored = load_checkpoint(a)
    assert (stored["n_classes"], stored["base"], stored["depth"], stored["digest"]) == (13, 4, 2, settings.digest())


def test_interrupted_run_resumes_bit_identically(caches, tmp_path):
    settings = SegmentationSettings(**TINY)
    reference = train_segmentation(settings, caches[:2], [caches[3]], tmp_path / "ref", progress=False)
    # a budget of (almost) zero minutes stops right after the first step with a checkpoint
    budget = dataclasses.replace(settings, time_budget_minutes=1e-9)
    assert budget.digest() == settings.digest()
    with pytest.raises(TrainingInterrupted):
        train_segmentation(budget, caches[:2], [caches[3]], tmp_path / "cut", progress=False)
    assert load_checkpoint(tmp_path / "cut/checkpoint.pt")["step"] == 1
    resumed = train_segmentation(settings, caches[:2], [caches[3]], tmp_path / "cut", progress=False)
    _assert_same(_weights(reference), _weights(resumed))
    for name in ("losses.tsv", "validation.tsv"):
        assert (tmp_path / "ref" / name).read_text() == (tmp_path / "cut" / name).read_text()


def test_checkpoint_of_other_settings_is_not_resumed(caches, tmp_path, caplog):
    settings = SegmentationSettings(**TINY)
    reference = train_segmentation(settings, caches[:1], [], tmp_path / "ref", progress=False)
    other = dataclasses.replace(settings, lr=5e-4, time_budget_minutes=1e-9)
    with pytest.raises(TrainingInterrupted):
        train_segmentation(other, caches[:1], [], tmp_path / "run", progress=False)
    with caplog.at_level("WARNING", logger="mr2ct.models.resumable"):
        again = train_segmentation(settings, caches[:1], [], tmp_path / "run", progress=False)
    assert "written for another run (digest" in caplog.text
    _assert_same(_weights(reference), _weights(again))


def test_changed_labels_retrain_instead_of_resuming(caches, tmp_path, caplog):
    from .conftest import changed_copy

    settings = SegmentationSettings(**TINY)
    first = _weights(train_segmentation(settings, caches[:2], [caches[3]], tmp_path / "run", progress=False))
    changed = changed_copy(caches[1], tmp_path / "changed", key="ct")
    with caplog.at_level("INFO", logger="mr2ct.models.resumable"):
        retrained = _weights(
            train_segmentation(settings, [caches[0], changed], [caches[3]], tmp_path / "run", progress=False)
        )
    assert f"training data changed (training: content of {caches[1].name})" in caplog.text
    assert not torch.equal(first["head.weight"], retrained["head.weight"])


def test_a_few_steps_reduce_the_loss(trained):
    losses = pd.read_csv(trained.parent / "losses.tsv", sep="\t")
    assert len(losses) == 40
    # the head starts at the class prior (CE ≈ 0.37 rather than ln 13), so the decrease is modest
    assert losses["loss"].iloc[-10:].mean() < 0.9 * losses["loss"].iloc[:5].mean()
    assert losses["ce"].iloc[-10:].mean() < 0.85 * losses["ce"].iloc[:5].mean()
    validation = pd.read_csv(trained.parent / "validation.tsv", sep="\t")
    assert list(validation["step"]) == [0, 20, 40]
    assert validation["mean_dice"].iloc[-1] > validation["mean_dice"].iloc[0] + 0.05


def test_segmentation_of_a_ct_file_has_the_ct_geometry(trained, caches, tiny_cohort, tmp_path):
    subject = caches[2].stem
    ct_path = tiny_cohort / subject / "ct.nii.gz"
    written = segment_files(trained, [ct_path], [caches[2]], [tmp_path / "seg.nii.gz"])
    assert written == [tmp_path / "seg.nii.gz"]
    ct = read_volume(ct_path)
    seg = read_volume(written[0], dtype=np.uint8)
    assert seg.data.shape == ct.data.shape
    np.testing.assert_allclose(seg.affine, ct.affine, atol=1e-4)
    assert seg.disk_axcodes == ct.disk_axcodes
    assert nib.load(written[0]).get_data_dtype() == np.uint8
    assert seg.data.max() < 13
    assert np.any(seg.data == 0)


def test_class_by_class_argmax_equals_the_full_argmax(trained, caches, tiny_cohort):
    cache = load_preprocessed(caches[2])
    ct = read_volume(tiny_cohort / caches[2].stem / "ct.nii.gz").data
    model = load_segmenter(trained)
    labels = segment_ct(model, ct, cache, batch_size=5)
    assert labels.dtype == np.uint8 and labels.shape == ct.shape
    slices = normalise_ct(
        cache.grid.to_slices(ct, order=1, cval=cache.ct_hu_points[0]), cache.ct_hu_points, cache.ct_norm_points
    )
    probs = predict_probabilities(model, slices)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    full = np.stack(
        [cache.grid.to_volume(probs[:, c], cache.shape[:2], order=1, cval=float(c == 0)) for c in range(13)]
    )
    np.testing.assert_array_equal(labels, full.argmax(axis=0))


def test_wrong_shape_ct_is_refused_naming_the_file(trained, caches, tiny_cohort, tmp_path):
    ct = read_volume(tiny_cohort / caches[2].stem / "ct.nii.gz")
    bad = tmp_path / "cropped_ct.nii.gz"
    write_volume(bad, Volume(ct.data[:-3], ct.affine, ct.disk_axcodes))
    with pytest.raises(InputError, match="cropped_ct.nii.gz"):
        segment_files(trained, [bad], [caches[2]], [tmp_path / "seg.nii.gz"])
    assert not (tmp_path / "seg.nii.gz").exists()


def test_a_file_that_is_not_a_segmenter_is_refused(tmp_path):
    generator_like = tmp_path / "generator.pt"
    save_checkpoint(generator_like, {"state_dict": {}, "ngf": 4, "n_blocks": 1})
    with pytest.raises(InputError, match="not an mr2ct segmentation model"):
        load_segmenter(generator_like)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="not a valid mr2ct checkpoint"):
        load_segmenter(garbage)


def test_unlabelled_or_out_of_range_labels_are_refused(caches, tmp_path):
    with np.load(caches[0]) as z:
        arrays = {k: z[k] for k in z.files}
    unlabelled = tmp_path / "unlabelled.npz"
    np.savez(unlabelled, **{k: v for k, v in arrays.items() if k != "labels"})
    with pytest.raises(InputError, match="unlabelled.npz.*no labels"):
        train_segmentation(SegmentationSettings(**TINY), [unlabelled], [], tmp_path / "a", progress=False)
    with pytest.raises(InputError, match="n_classes=5"):
        train_segmentation(
            SegmentationSettings(**{**TINY, "n_classes": 5}), caches[:1], [], tmp_path / "b", progress=False
        )


def test_perfect_logits_have_low_loss():
    target = torch.randint(0, 4, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    logits = 20.0 * torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    total, ce, dice_loss = segmentation_loss(logits, target, dice_weight=1.0)
    assert float(ce) < 1e-6 and float(dice_loss) < 1e-6
    wrong = segmentation_loss(logits.roll(1, dims=1), target, dice_weight=1.0)[0]
    assert float(wrong) > float(total) + 1.0


def test_settings_from_config():
    config = {
        "seed": 42,
        "segmentation": {
            "steps": 100,
            "batch_size": 8,
            "lr": 1e-3,
            "base": 16,
            "depth": 3,
            "dice_weight": 1.0,
            "min_body_fraction": 0.05,
            "augment": True,
            "checkpoint_every": 50,
            "eval_every": 50,
            "device": "auto",
            "time_budget_minutes": 0,
            "threads": 1,
        },
    }
    a = SegmentationSettings.from_config(config, fold=0, n_classes=13)
    b = SegmentationSettings.from_config(config, fold=1, n_classes=13)
    assert a.steps == 100 and a.n_classes == 13 and a.seed != b.seed
    assert a == SegmentationSettings.from_config(config, fold=0, n_classes=13)
    assert a.digest() != b.digest()
    with pytest.raises(InputError, match="unknown key"):
        SegmentationSettings.from_config({"seed": 1, "segmentation": {"stepz": 3}}, fold=0, n_classes=13)
    with pytest.raises(InputError, match="at least 2 classes"):
        SegmentationSettings(n_classes=1)


def test_class_balanced_sampling_shows_small_structures_as_often_as_large_ones():
    """Label 1 fills 90 of 100 slices, label 2 is in 10: uniform draws show label 2 in about 10 % of
    the samples, class-balanced ones in about 55 % (half the picks choose it, and a tenth of the
    other half's slices show it too); only the given generator is used."""
    from mr2ct.segmentation.segmenter import SliceSampler

    labels = torch.zeros(100, 4, 4, dtype=torch.int64)
    labels[:90, 0, 0] = 1
    labels[90:, 1, 1] = 2
    labels[85:90, 1, 1] = 2  # five slices show both
    shows_two = (labels == 2).flatten(1).any(dim=1)
    state = torch.get_rng_state()
    for mode, expected in (("uniform", 0.15), ("class_balanced", 0.5 + 0.5 * 5 / 90)):
        picks = SliceSampler(labels, mode)(20000, torch.Generator().manual_seed(1))
        assert picks.min() >= 0 and picks.max() < 100
        assert float(shows_two[picks].float().mean()) == pytest.approx(expected, abs=0.015), mode
    again = SliceSampler(labels, "class_balanced")(50, torch.Generator().manual_seed(1))
    assert torch.equal(again, SliceSampler(labels, "class_balanced")(50, torch.Generator().manual_seed(1)))
    assert torch.equal(torch.get_rng_state(), state)
