"""The resumable training loop (mr2ct.models.resumable): a killed run resumes bit-identically, a
checkpoint of other data or of another format is not resumed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mr2ct.data.io import InputError
from mr2ct.models.resumable import TrainingInterrupted, load_checkpoint
from mr2ct.models.training import TrainSettings, train_run

from .conftest import changed_copy
from .test_training import TINY, _assert_same, _weights


def test_interrupted_run_resumes_bit_identically(caches, tmp_path):
    settings = TrainSettings(model="cyclegan_gc", gc_weight=1.0, **TINY)
    reference = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "ref", progress=False)
    # a budget of zero minutes stops right after the first step with a checkpoint
    budget = dataclasses.replace(settings, time_budget_minutes=1e-9)
    with pytest.raises(TrainingInterrupted):
        train_run(budget, [caches[0]], [caches[1]], [caches[3]], tmp_path / "cut", progress=False)
    assert load_checkpoint(tmp_path / "cut/checkpoint.pt")["step"] == 1
    resumed = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "cut", progress=False)
    _assert_same(_weights(reference), _weights(resumed))
    ref_losses = (tmp_path / "ref/losses.tsv").read_text()
    assert ref_losses == (tmp_path / "cut/losses.tsv").read_text()


def test_a_changed_training_input_retrains_instead_of_resuming(caches, tmp_path, caplog):
    """The checkpoint of a finished run is not resumed for other data: the run starts afresh,
    says which input changed, and ends with other weights; unchanged data resumes bit-identically."""
    settings = TrainSettings(model="cyclegan_gc", gc_weight=1.0, **TINY)
    run = tmp_path / "run"
    first = _weights(train_run(settings, [caches[0]], [caches[1]], [caches[3]], run, progress=False))
    with caplog.at_level("INFO", logger="mr2ct.models.resumable"):
        again = _weights(train_run(settings, [caches[0]], [caches[1]], [caches[3]], run, progress=False))
    assert f"resumed from {run / 'checkpoint.pt'} at step {settings.steps}" in caplog.text
    _assert_same(first, again)
    caplog.clear()
    changed = changed_copy(caches[0], tmp_path / "changed")
    with caplog.at_level("INFO", logger="mr2ct.models.resumable"):
        retrained = _weights(train_run(settings, [changed], [caches[1]], [caches[3]], run, progress=False))
    assert f"training data changed (mr: content of {caches[0].name})" in caplog.text
    assert "resumed" not in caplog.text
    assert not torch.equal(first["model.1.weight"], retrained["model.1.weight"])
    # the same data in another role is another run too
    caplog.clear()
    with caplog.at_level("INFO", logger="mr2ct.models.resumable"):
        train_run(settings, [caches[1]], [caches[0]], [caches[3]], run, progress=False)
    assert "training data changed" in caplog.text


def test_checkpoint_that_is_not_a_state_dict_is_refused(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(pickle.dumps({"step": Evil()}))
    with pytest.raises(InputError, match="not a valid mr2ct checkpoint") as info:
        load_checkpoint(path)
    assert "weights_only=False" not in str(info.value) and "refused to load" in str(info.value)


def test_resume_after_the_image_pool_filled_equals_an_uninterrupted_run(caches, tmp_path, monkeypatch):
    """Interrupt at step 4 of 8 with a pool of 2 images (full after step 1, then replaced at
    random): the resumed run draws the same pool replacements and ends bit-identical."""
    settings = TrainSettings(model="cyclegan_gc", gc_weight=1.0, **{**TINY, "pool_size": 2, "checkpoint_every": 100})
    reference = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "ref", progress=False)

    class Clock:  # one second per call: the time budget of 3.5 s ends the run after step 4
        now = 0.0

        @classmethod
        def monotonic(cls):
            cls.now += 1.0
            return cls.now

    monkeypatch.setattr("mr2ct.models.training.time", Clock)
    monkeypatch.setattr("mr2ct.models.resumable.time", Clock)
    with pytest.raises(TrainingInterrupted):
        train_run(
            dataclasses.replace(settings, time_budget_minutes=3.5 / 60),
            [caches[0]],
            [caches[1]],
            [caches[3]],
            tmp_path / "cut",
            progress=False,
        )
    state = load_checkpoint(tmp_path / "cut/checkpoint.pt")
    assert state["step"] == 4 and len(state["pool_ct"]) == 2
    monkeypatch.undo()
    resumed = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "cut", progress=False)
    _assert_same(_weights(reference), _weights(resumed))
    assert (tmp_path / "ref/losses.tsv").read_text() == (tmp_path / "cut/losses.tsv").read_text()
