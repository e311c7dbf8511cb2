"""Training runs: determinism, bit-identical resume, learning, checkpoints, synthesis geometry."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from mr2ct.data.io import InputError, read_volume
from mr2ct.data.preprocess import load_preprocessed
from mr2ct.models.devices import training_device
from mr2ct.models.resumable import load_checkpoint
from mr2ct.models.synthesis import load_generator, synthesize_run
from mr2ct.models.training import TrainSettings, random_crop, train_run

TINY = dict(steps=8, batch_size=2, ngf=4, n_blocks=1, ndf=4, n_layers=2, eval_every=4, checkpoint_every=3, seed=3)


def _weights(path):
    return load_generator(path).state_dict()


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("model", ["cyclegan_gc", "reference_supervised"])
def test_same_settings_give_identical_weights(caches, tmp_path, model):
    mr, ct = (caches[:2], caches[:2]) if model == "reference_supervised" else ([caches[0]], [caches[1]])
    settings = TrainSettings(model=model, gc_weight=1.0 if model == "cyclegan_gc" else 0.0, **TINY)
    a = train_run(settings, mr, ct, [caches[3]], tmp_path / "a", progress=False)
    b = train_run(settings, mr, ct, [caches[3]], tmp_path / "b", progress=False)
    _assert_same(_weights(a), _weights(b))
    c = train_run(dataclasses.replace(settings, seed=4), mr, ct, [caches[3]], tmp_path / "c", progress=False)
    assert not torch.equal(_weights(a)["model.1.weight"], _weights(c)["model.1.weight"])


def test_bf16_autocast_on_cpu_is_deterministic_and_differs_from_fp32(caches, tmp_path):
    """``train.amp: bf16`` runs on any CPU (emulated where not native); the tiny workflow pins fp32
    for its golden values, so this is where the bf16 path of the default run is exercised."""
    settings = TrainSettings(model="cyclegan_gc", gc_weight=1.0, **{**TINY, "steps": 4}, amp="bf16")
    a = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "a", progress=False)
    b = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "b", progress=False)
    _assert_same(_weights(a), _weights(b))
    c = train_run(
        dataclasses.replace(settings, amp="none"), [caches[0]], [caches[1]], [caches[3]], tmp_path / "c", progress=False
    )
    assert not torch.equal(_weights(a)["model.1.weight"], _weights(c)["model.1.weight"])
    assert all(torch.isfinite(w).all() for w in _weights(a).values())


def test_a_few_steps_reduce_the_cycle_loss(caches, tmp_path):
    settings = TrainSettings(
        model="cyclegan",
        steps=40,
        batch_size=2,
        ngf=8,
        n_blocks=1,
        ndf=8,
        n_layers=2,
        eval_every=0,
        checkpoint_every=100,
        seed=1,
        lr=1e-3,
    )
    train_run(settings, caches[:2], caches[2:4], [], tmp_path, progress=False)
    import pandas as pd

    losses = pd.read_csv(tmp_path / "losses.tsv", sep="\t")
    assert losses["cycle"].iloc[-10:].mean() < 0.6 * losses["cycle"].iloc[:5].mean()


def test_random_crop_takes_one_window_per_sample_shared_by_paired_tensors():
    rng = torch.Generator().manual_seed(0)
    mr = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(3, 1, 32, 32)
    crop_mr, crop_ct = random_crop([mr, -mr], 16, rng)
    assert crop_mr.shape == (3, 1, 16, 16) and torch.equal(crop_ct, -crop_mr)
    for i in range(3):  # each crop is a contiguous window of its own sample
        r, c = divmod(int(crop_mr[i, 0, 0, 0]) - i * 32 * 32, 32)
        assert torch.equal(crop_mr[i, 0], mr[i, 0, r : r + 16, c : c + 16])
    assert random_crop([mr], 0, rng)[0] is mr


def test_crop_training_runs_and_rejects_crops_larger_than_the_slices(caches, tmp_path):
    settings = TrainSettings(model="cyclegan_gc", gc_weight=1.0, crop_size=16, **TINY)
    load_generator(train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path / "ok", progress=False))
    with pytest.raises(InputError, match="train.crop_size"):
        train_run(
            dataclasses.replace(settings, crop_size=48), [caches[0]], [caches[1]], [], tmp_path / "big", progress=False
        )
    with pytest.raises(InputError, match="train.crop_size"):
        dataclasses.replace(settings, crop_size=18)


def test_synthesis_writes_int16_hu_on_the_ct_grid(caches, tiny_cohort, tmp_path):
    import nibabel as nib

    settings = TrainSettings(model="reference_supervised", **TINY)
    generator = train_run(settings, caches[:2], caches[:2], [], tmp_path / "run", progress=False)
    written = synthesize_run(generator, [caches[2]], tmp_path / "synth")
    subject = caches[2].stem
    real = read_volume(tiny_cohort / subject / "ct.nii.gz")
    fake = read_volume(written[0])
    assert fake.data.shape == real.data.shape
    np.testing.assert_allclose(fake.affine, real.affine)
    assert fake.disk_axcodes == real.disk_axcodes
    assert nib.load(written[0]).get_data_dtype() == np.int16
    assert -1024 <= fake.data.min() and fake.data.max() <= 1500


def _generator_grads(settings, mr, ct):
    """Gradients of G_CT's parameters after one training step of a fresh run (same seed, same batch)."""
    from mr2ct.models.training import new_run

    run = new_run(settings, torch.device("cpu"))
    run.train_step(mr, ct)
    return [p.grad.detach().clone() for p in run.g_ct.parameters()], run


def test_gc_reaches_the_generator_gradients_with_its_weight():
    """The gradient of a cyclegan_gc step minus that of the same step without GC is exactly
    gc_weight x the gradient of the GC loss, computed independently from the same networks."""
    from mr2ct.models.losses import gradient_consistency_loss

    torch.manual_seed(0)
    mr, ct = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    base = dict(TINY, amp="none", pool_size=0)
    without, _ = _generator_grads(TrainSettings(model="cyclegan_gc", gc_weight=0.0, **base), mr, ct)
    weight = 3.0
    with_gc, _ = _generator_grads(TrainSettings(model="cyclegan_gc", gc_weight=weight, **base), mr, ct)
    from mr2ct.models.training import new_run

    fresh = new_run(TrainSettings(model="cyclegan_gc", gc_weight=weight, **base), torch.device("cpu"))
    fresh.optimisers["g"].zero_grad()
    gradient_consistency_loss(mr, fresh.g_ct(mr), ct, fresh.nets["g_mr"](ct)).backward()
    expected = [weight * p.grad for p in fresh.g_ct.parameters()]
    moved = 0
    # float cancellation in a - b scales with the gradients themselves (biases before instance norm are ~0)
    atol = 1e-4 * max(float(a.abs().max()) for a in with_gc)
    for a, b, e in zip(with_gc, without, expected):
        torch.testing.assert_close(a - b, e, rtol=1e-3, atol=atol)
        moved += int(float(e.abs().max()) > 100 * atol)  # the GC part is far above that tolerance
    assert moved >= len(expected) // 3


def test_only_cyclegan_gc_gets_the_gc_weight_from_the_config():
    from mr2ct.config import load_config

    from .conftest import ROOT

    config = load_config(ROOT / "config.yaml")
    assert config["train"]["gc_weight"] > 0
    weights = {
        m: TrainSettings.from_config(config, m, 6, 0).gc_weight
        for m in ("cyclegan", "cyclegan_gc", "reference_supervised")
    }
    assert weights == {"cyclegan": 0.0, "cyclegan_gc": config["train"]["gc_weight"], "reference_supervised": 0.0}


def test_replicates_are_runs_with_their_own_seeds_and_replicate_0_keeps_the_single_run_seed():
    from mr2ct.config import load_config, merge

    from .conftest import ROOT

    single = load_config(ROOT / "config.yaml")
    replicated = merge(single, {"splits": {"replicates": 3}})
    seeds = [TrainSettings.from_config(replicated, "cyclegan_gc", 6, 1, r).seed for r in range(3)]
    assert len(set(seeds)) == 3
    assert seeds[0] == TrainSettings.from_config(single, "cyclegan_gc", 6, 1).seed
    # the arms' seeds differ within a replicate, and a replicate's seed from other folds' and sizes'
    assert TrainSettings.from_config(replicated, "cyclegan", 6, 1, 1).seed != seeds[1]
    assert TrainSettings.from_config(replicated, "cyclegan_gc", 6, 0, 1).seed != seeds[1]
    assert TrainSettings.from_config(replicated, "cyclegan_gc", 2, 1, 1).seed != seeds[1]
    # everything but the seed is shared by the replicates
    a, b = (dataclasses.asdict(TrainSettings.from_config(replicated, "cyclegan_gc", 6, 1, r)) for r in (0, 2))
    assert {k for k in a if a[k] != b[k]} == {"seed"}
    with pytest.raises(InputError, match=r"replicate 3 is outside config key 'splits.replicates' \(3\)"):
        TrainSettings.from_config(replicated, "cyclegan_gc", 6, 1, 3)


def test_training_device_sets_up_reproducible_runs():
    torch.backends.cudnn.benchmark = True
    torch.use_deterministic_algorithms(False)
    assert training_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    assert training_device("cpu") == torch.device("cpu")


def test_a_run_logs_its_learning_rate_schedule_validation_and_progress(caches, tmp_path, caplog, capsys):
    """Besides its weights a run writes the learning rate of every step (constant, then linear decay
    over the last ``decay_fraction`` of the steps), validation scores next to the constant-prediction
    baseline, one log line per evaluation and, by default, a progress bar with running losses."""
    import pandas as pd

    settings = TrainSettings(
        model="cyclegan_gc", gc_weight=1.0, **{**TINY, "steps": 25, "eval_every": 25, "decay_fraction": 0.4, "lr": 1e-3}
    )
    with caplog.at_level("INFO", logger="mr2ct.models.training"):
        generator = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path)
    bar = capsys.readouterr().err
    assert "train cyclegan_gc" in bar and all(f"{label}=" in bar for label in ("G", "cyc", "D"))

    losses = pd.read_csv(tmp_path / "losses.tsv", sep="\t")
    k = np.arange(settings.steps)  # the step index: the rate used by step k + 1
    expected_lr = settings.lr * np.clip((settings.steps - k) / (settings.steps * settings.decay_fraction), 0, 1)
    np.testing.assert_allclose(losses["lr"], expected_lr, rtol=1e-5)

    validation = pd.read_csv(tmp_path / "validation.tsv", sep="\t")
    assert list(validation["step"]) == [0, 25]
    train_ct, val = load_preprocessed(caches[1]), load_preprocessed(caches[3])
    constant = train_ct.ct_hu(train_ct.ct)[train_ct.mask > 0].mean()  # the mean HU of the training CT's body
    baseline = np.abs(val.ct_hu(val.ct) - constant)[val.mask > 0].mean()
    np.testing.assert_allclose(validation["baseline_constant_mae"], baseline, atol=1e-3)
    last = validation.iloc[-1]
    logged = re.search(
        r"step 25: validation MAE ([\d.]+) HU, boundary MAE ([\d.]+) HU \(constant baseline ([\d.]+) HU\)", caplog.text
    )
    assert logged, caplog.text
    np.testing.assert_allclose(
        [float(v) for v in logged.groups()],
        [last["mae"], last["mae_boundary"], last["baseline_constant_mae"]],
        atol=0.051,
    )
    saved = load_checkpoint(generator)
    assert (saved["model"], saved["steps"], saved["selected_step"]) == ("cyclegan_gc", 25, 25)
    trained_on = json.loads(saved["data"])  # the generator names the data it was trained on
    assert [name for name, _ in trained_on["mr"] + trained_on["ct"]] == [caches[0].name, caches[1].name]


def test_the_untrained_generator_of_step_0_is_never_selected(caches, tmp_path):
    """With a learning rate too small to move a weight, every evaluation scores the same; selection
    then keeps the first trained one (step 1), not the initialisation evaluated at step 0."""
    settings = TrainSettings(model="cyclegan", **{**TINY, "steps": 3, "eval_every": 1, "lr": 1e-30})
    generator = train_run(settings, [caches[0]], [caches[1]], [caches[3]], tmp_path, progress=False)
    import pandas as pd

    maes = pd.read_csv(tmp_path / "validation.tsv", sep="\t")["mae"]
    assert len(maes) == 4 and maes.nunique() == 1
    assert load_checkpoint(generator)["selected_step"] == 1


def test_auto_precision_is_bf16_only_where_torch_reports_native_bf16(monkeypatch):
    from mr2ct.models import devices

    cpu = torch.device("cpu")
    for native, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(devices, "bf16_supported", lambda device, native=native: native)
        assert devices.resolve_precision("auto", cpu) == expected
        assert devices.resolve_precision("none", cpu) == "fp32" and devices.resolve_precision("bf16", cpu) == "bf16"


def test_geometric_augmentation_draws_independent_flip_zoom_and_shift_from_the_run_generator():
    """Read the transform of each sample back from two linear ramps (bilinear sampling of a linear
    function is exact): the x ramp becomes ``flip / zoom * x + shift_x``, the y ramp
    ``y / zoom + shift_y`` in the centre, where nothing samples outside the slice. Flip is a fair
    coin, zoom and shifts uniform on their ranges, all independent, the same for every tensor of
    the call, drawn only from the given generator (the global torch RNG is left alone)."""
    from mr2ct.models.training import AUGMENT_SHIFT, AUGMENT_ZOOM, augment_geometry

    n, size = 4000, 33
    centres = (2 * torch.arange(size, dtype=torch.float64) + 1) / size - 1  # align_corners=False pixel centres
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    ramps = [x.expand(n, 1, size, size).float(), y.expand(n, 1, size, size).float()]
    global_state = torch.get_rng_state()
    out_x, out_y = augment_geometry(ramps, torch.Generator().manual_seed(11))
    assert torch.equal(torch.get_rng_state(), global_state)
    centre = (x.abs() < 0.5) & (y.abs() < 0.5)
    design = np.stack([x[centre].numpy(), y[centre].numpy(), np.ones(int(centre.sum()))], axis=1)

    def fit(out):  # least squares of every sample's centre on (x, y, 1)
        return np.linalg.lstsq(design, out[:, 0][:, centre].double().numpy().T, rcond=None)[0]

    (ax, bx, shift_x), (ay, by, shift_y) = fit(out_x), fit(out_y)
    np.testing.assert_allclose(np.c_[bx, ay], 0, atol=1e-4)  # no rotation or shear
    zoom = 1 / by
    flip = np.sign(ax)
    np.testing.assert_allclose(np.abs(ax), 1 / zoom, atol=1e-4)  # isotropic zoom
    assert 0.45 < (flip < 0).mean() < 0.55
    for values, half in ((zoom - 1, AUGMENT_ZOOM), (shift_x, AUGMENT_SHIFT), (shift_y, AUGMENT_SHIFT)):
        assert values.min() > -half - 1e-4 and values.max() < half + 1e-4
        assert values.min() < -0.95 * half and values.max() > 0.95 * half
        np.testing.assert_allclose(np.std(values), half / np.sqrt(3), rtol=0.06)  # uniform on [-half, half]
    correlations = np.corrcoef(np.stack([flip, zoom, shift_x, shift_y]))
    assert np.abs(correlations[np.triu_indices(4, 1)]).max() < 0.08  # 5 sd of a correlation of 4000 pairs
    again = augment_geometry(ramps, torch.Generator().manual_seed(11))
    assert torch.equal(again[0], out_x) and torch.equal(again[1], out_y)


def test_one_cyclegan_step_logs_the_objectives_of_zhu_et_al_computed_from_the_initial_networks():
    """Least-squares adversarial losses, L1 cycle losses and the discriminators' real/fake objective
    of one step, recomputed here from a fresh run of the same seed (the step's forward passes
    use the initial weights; the discriminators are updated after the generators)."""
    from mr2ct.models.training import new_run

    torch.manual_seed(0)
    mr, ct = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    settings = TrainSettings(model="cyclegan", **{**TINY, "amp": "none", "pool_size": 0})
    logged = new_run(settings, torch.device("cpu")).train_step(mr, ct)
    nets = new_run(settings, torch.device("cpu")).nets
    with torch.no_grad():
        fake_ct, fake_mr = nets["g_ct"](mr), nets["g_mr"](ct)
        adv = ((nets["d_ct"](fake_ct) - 1) ** 2).mean() + ((nets["d_mr"](fake_mr) - 1) ** 2).mean()
        cyc = (nets["g_mr"](fake_ct) - mr).abs().mean() + (nets["g_ct"](fake_mr) - ct).abs().mean()
        d_ct = 0.5 * (((nets["d_ct"](ct) - 1) ** 2).mean() + (nets["d_ct"](fake_ct) ** 2).mean())
        d_mr = 0.5 * (((nets["d_mr"](mr) - 1) ** 2).mean() + (nets["d_mr"](fake_mr) ** 2).mean())
    expected = {"adv": adv, "cycle": cyc, "loss_d": d_ct + d_mr, "loss_g": adv + settings.lambda_cycle * cyc}
    for name, value in expected.items():
        assert logged[name] == pytest.approx(float(value), rel=1e-5), name
    assert logged["identity"] == 0.0 and logged["lr"] == settings.lr


def test_validation_boundary_mae_takes_the_bone_from_the_labels_when_given(caches):
    """With bone label ids the boundary band follows those labels; without, the CT above 200 HU."""
    from mr2ct.models.training import evaluate, new_run

    subject = load_preprocessed(caches[3])
    generator = new_run(TrainSettings(model="cyclegan", **TINY), torch.device("cpu")).g_ct.eval()
    labels, counts = np.unique(subject.labels[subject.labels > 0], return_counts=True)
    largest = int(labels[np.argmax(counts)])  # the largest structure: soft tissue, not bone
    by_threshold, _ = evaluate(generator, [subject], torch.device("cpu"))
    by_label, _ = evaluate(generator, [subject], torch.device("cpu"), bone_labels=(largest,))
    assert by_label["mae"] == by_threshold["mae"]
    assert by_label["mae_boundary"] != pytest.approx(by_threshold["mae_boundary"], rel=1e-3)


def test_context_stack_gives_each_slice_its_neighbours_in_order_and_repeats_the_edges():
    from mr2ct.data.preprocess import context_stack

    slices = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    stacked = context_stack(slices, 1)
    assert stacked.shape == (5, 3, 2, 3)
    assert stacked[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]
    assert context_stack(slices, 2, np.array([4]))[:, :, 0, 0].tolist() == [[2, 3, 4, 4, 4]]
    np.testing.assert_array_equal(context_stack(slices, 0)[:, 0], slices)


def test_a_2p5d_generator_gets_each_slice_with_its_neighbours_at_synthesis():
    """A stand-in generator that returns its first channel (the slice below) shows what
    predict_ct feeds it: the previous slice of the volume, across batch boundaries."""
    from mr2ct.models.synthesis import predict_ct

    class Below(torch.nn.Module):
        in_channels = 3

        def forward(self, x):
            return x[:, :1]

    mr = np.random.default_rng(0).random((7, 8, 8)).astype(np.float32)
    out = predict_ct(Below(), mr, batch_size=3)
    np.testing.assert_array_equal(out, mr[[0, 0, 1, 2, 3, 4, 5]])


def test_2p5d_runs_train_both_models_and_synthesize_with_three_mr_channels(caches, tiny_cohort, tmp_path):
    from mr2ct.models.training import new_run

    run = new_run(TrainSettings(model="cyclegan_gc", gc_weight=1.0, context_slices=1, **TINY), torch.device("cpu"))
    assert (run.g_ct.in_channels, run.g_ct.out_channels) == (3, 1)
    assert (run.nets["g_mr"].in_channels, run.nets["g_mr"].out_channels) == (1, 3)
    assert run.nets["d_mr"].in_channels == 3 and run.nets["d_ct"].in_channels == 1
    for model, mr, ct in (("cyclegan_gc", [caches[0]], [caches[1]]), ("reference_supervised", caches[:2], caches[:2])):
        settings = TrainSettings(model=model, gc_weight=float(model == "cyclegan_gc"), context_slices=1, **TINY)
        generator = train_run(settings, mr, ct, [caches[3]], tmp_path / model, progress=False)
        assert load_checkpoint(generator)["spec"]["in_channels"] == 3
        written = synthesize_run(generator, [caches[2]], tmp_path / f"synth_{model}")
        assert read_volume(written[0]).data.shape == read_volume(tiny_cohort / caches[2].stem / "ct.nii.gz").data.shape
    with pytest.raises(InputError, match="train.lambda_identity.*train.context_slices"):
        TrainSettings(model="cyclegan", context_slices=1, lambda_identity=0.5)


def test_the_mind_loss_enters_the_generator_objective_with_its_weight():
    """With mind_weight w the logged generator objective is adv + lambda_cycle cycle + gc_weight GC
    + w MIND, all computed by the step; the supervised reference refuses a MIND weight."""
    from mr2ct.models.training import new_run

    torch.manual_seed(0)
    mr, ct = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    settings = TrainSettings(model="cyclegan_gc", gc_weight=2.0, mind_weight=3.0, **{**TINY, "amp": "none"})
    logged = new_run(settings, torch.device("cpu")).train_step(mr, ct)
    assert logged["mind_loss"] > 0
    expected = (
        logged["adv"] + settings.lambda_cycle * logged["cycle"] + 2.0 * logged["gc_loss"] + 3.0 * logged["mind_loss"]
    )
    assert logged["loss_g"] == pytest.approx(expected, rel=1e-6)
    assert (
        new_run(dataclasses.replace(settings, mind_weight=0.0), torch.device("cpu")).train_step(mr, ct)["mind_loss"]
        == 0
    )
    with pytest.raises(InputError, match="trains without the MIND loss"):
        TrainSettings(model="reference_supervised", mind_weight=1.0)
