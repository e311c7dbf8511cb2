"""Hostile or careless configuration, refused at parse time with the key (and file, line) named.

Three classes: numbers that are not numbers (NaN, infinity, fractional counts, YAML 1.1
octal/base-60 integers, booleans), YAML and config traps (a repeated key, keys without
effect, empty overlays) and settings that would otherwise fail only inside a job (device
names, network depths that do not fit the slices). Everything goes through
:func:`mr2ct.config.validate_config` / :func:`~mr2ct.config.load_yaml`, which both
``mr2ct validate`` and the workflow's parse (rules/common.smk) use.
"""

from __future__ import annotations

import math

import pytest

from mr2ct.config import load_yaml, merge, validate_config
from mr2ct.data.io import InputError

from .conftest import ROOT


def effective(overlay: dict) -> dict:
    """config.yaml with ``overlay`` merged on it, validated (as the workflow does)."""
    return validate_config(merge(load_yaml(ROOT / "config.yaml"), overlay))


def refused(overlay: dict, *fragments: str) -> str:
    with pytest.raises(InputError) as err:
        effective(overlay)
    text = str(err.value)
    for fragment in fragments:
        assert fragment in text, (fragment, text)
    return text


def cli(tmp_path, monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from mr2ct.cli import main

    monkeypatch.chdir(ROOT)
    code = main(["validate", *args, "--results", str(tmp_path / "results")])
    return code, capsys.readouterr().err


# 1. numbers that are not numbers


@pytest.mark.parametrize(
    ("overlay", "key"),
    [
        ({"data": {"geometry_tolerance_mm": math.nan}}, "data.geometry_tolerance_mm"),
        ({"evaluation": {"boundary_band_mm": math.nan}}, "evaluation.boundary_band_mm"),
        ({"train": {"lambda_cycle": math.inf}}, "train.lambda_cycle"),
        ({"train": {"time_budget_minutes": math.inf}}, "train.time_budget_minutes"),
        ({"train": {"lr": "nan"}}, "train.lr"),  # YAML `lr: nan` is a string, read as a float
        ({"segmentation": {"dice_weight": "-inf"}}, "segmentation.dice_weight"),
        ({"preprocess": {"ct_hu_points": [-math.inf, -200, 200, 1500]}}, "preprocess.ct_hu_points[0]"),
        ({"preprocess": {"ct_hu_points": [-1024, math.nan, 200, 1500]}}, "preprocess.ct_hu_points[1]"),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_key(overlay, key):
    """NaN passes every schema range (each comparison with it is false): a NaN tolerance would
    let every geometry comparison pass. Refused as not finite."""
    refused(overlay, f"'{key}'", "finite number")


def test_nan_and_infinity_in_yaml_spelling_are_refused(tmp_path, monkeypatch, capsys):
    path = tmp_path / "o.yaml"
    path.write_text("data: {geometry_tolerance_mm: .nan}\ntrain: {lambda_cycle: -.inf}\n")
    code, err = cli(tmp_path, monkeypatch, capsys, "--configfile", str(path))
    assert code == 2 and "Traceback" not in err
    assert "'data.geometry_tolerance_mm': got nan" in err and "'train.lambda_cycle': got -inf" in err


def test_settings_built_in_code_refuse_nan():
    from mr2ct.settings import SegmentationSettings, TrainSettings

    with pytest.raises(InputError, match="'train.lr'.*finite"):
        TrainSettings(lr=math.nan)
    with pytest.raises(InputError, match="'segmentation.dice_weight'.*finite"):
        SegmentationSettings(dice_weight=math.inf)


def test_whole_numbers_written_as_floats_are_read_as_integers():
    """``sizes: [2.0, 6]`` passed the schema (JSON schema counts 2.0 as an integer) and failed in
    splits.py with a TypeError; YAML reads ``1e3`` as a string. Both mean integers."""
    config = effective(
        {"splits": {"sizes": [2.0, 6], "replicates": 1.0, "folds": "2"}, "train": {"steps": "1e3", "ndf": 1.6e1}}
    )
    assert config["splits"]["sizes"] == [2, 6] and all(type(v) is int for v in config["splits"]["sizes"])
    assert type(config["splits"]["replicates"]) is int and config["splits"]["replicates"] == 1
    assert type(config["train"]["steps"]) is int and config["train"]["steps"] == 1000
    assert type(config["train"]["ndf"]) is int and config["train"]["ndf"] == 16


def test_whole_number_floats_do_not_crash_the_cli(tmp_path, monkeypatch, capsys):
    path = tmp_path / "o.yaml"
    path.write_text("splits: {sizes: [2.0, 6]}\ntrain: {steps: 1e3}\n")
    code, err = cli(tmp_path, monkeypatch, capsys, "--configfile", str(path))
    assert code == 0, err


@pytest.mark.parametrize(
    ("overlay", "key"),
    [({"splits": {"folds": 2.5}}, "splits.folds"), ({"train": {"steps": "1.5"}}, "train.steps")],
)
def test_fractional_counts_are_refused(overlay, key):
    refused(overlay, f"'{key}'", "integer")


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("train:\n  steps: 010\n", ["line 2", "'train.steps'", "010", "octal number 8", "10 without the zero"]),
        ("splits: {sizes: [2, 016]}\n", ["line 1", "'splits.sizes[1]'", "octal number 14"]),
        ("train: {time_budget_minutes: 1:30}\n", ["'train.time_budget_minutes'", "base-60", "90"]),
    ],
)
def test_yaml_11_octal_and_base60_integers_are_refused(tmp_path, text, fragments):
    """PyYAML reads ``010`` as 8 and ``1:30`` as 90 (YAML 1.1)."""
    path = tmp_path / "overlay.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_yaml(path)
    for fragment in [str(path), *fragments]:
        assert fragment in str(err.value), (fragment, str(err.value))


def test_octal_on_the_command_line_is_refused(tmp_path, monkeypatch, capsys):
    code, err = cli(tmp_path, monkeypatch, capsys, "--set", "train.steps=010")
    assert code == 2 and "'train.steps'" in err and "octal number 8" in err


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("train: {steps: yes}\n", "train.steps", "an integer"),
        ("splits: {folds: true}\n", "splits.folds", "an integer"),
        ("train: {lr: on}\n", "train.lr", "a number"),
    ],
)
def test_booleans_where_numbers_are_meant_are_refused_explaining_yaml(
    tmp_path, monkeypatch, capsys, text, key, expected
):
    path = tmp_path / "o.yaml"
    path.write_text(text)
    code, err = cli(tmp_path, monkeypatch, capsys, "--configfile", str(path))
    assert code == 2 and f"'{key}': got the boolean true" in err and "yes/no/on/off" in err and expected in err


# 2. YAML and config traps


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("train: {steps: 5}\nseed: 1\ntrain: {ngf: 8}\n", "'train'", "lines 1 and 3"),
        ("train:\n  steps: 5\n  ngf: 8\n  steps: 7\n", "'train.steps'", "lines 2 and 4"),
        ("splits: {folds: 2, folds: 3}\n", "'splits.folds'", "lines 1 and 1"),
    ],
)
def test_a_key_repeated_in_one_file_is_refused_with_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_yaml(path)
    message = str(err.value)
    assert str(path) in message and key in message and lines in message and "twice" in message


def test_a_merge_key_may_be_overridden(tmp_path):
    path = tmp_path / "anchors.yaml"
    path.write_text("train: &t {steps: 5, ngf: 8}\nsegmentation:\n  <<: {steps: 3, base: 4}\n  steps: 7\n")
    assert load_yaml(path)["segmentation"] == {"steps": 7, "base": 4}


def test_a_repeated_key_in_the_base_config_is_refused_by_the_cli(tmp_path, monkeypatch, capsys):
    base = tmp_path / "config.yaml"
    base.write_text((ROOT / "config.yaml").read_text() + "\nseed: 7\n")
    code, err = cli(tmp_path, monkeypatch, capsys, "--base", str(base))
    assert code == 2 and "'seed' is given twice" in err and str(base) in err


@pytest.mark.parametrize(
    ("data", "key", "source"),
    [
        ({"sheet": "subjects.tsv"}, "data.sheet", "phantom"),
        ({"source": "synthrad", "synthrad_dir": "t1", "sheet": "subjects.tsv"}, "data.sheet", "synthrad"),
        ({"synthrad_dir": "Task1/pelvis"}, "data.synthrad_dir", "phantom"),
        ({"source": "sheet", "sheet": "s.tsv", "synthrad_dir": "Task1"}, "data.synthrad_dir", "sheet"),
        ({"labels_table": "labels.tsv"}, "data.labels_table", "phantom"),
        ({"labels_dir": "labels"}, "data.labels_dir", "phantom"),
        (
            {"source": "synthrad", "synthrad_dir": "t1", "allow_absolute_paths": True},
            "data.allow_absolute_paths",
            "synthrad",
        ),
    ],
)
def test_a_key_without_effect_for_the_source_is_refused(data, key, source):
    refused({"data": data}, f"'{key}'", f"'data.source: {source}'", "no effect")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "~\n"])
def test_an_empty_overlay_is_refused_naming_the_file(tmp_path, monkeypatch, capsys, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    code, err = cli(tmp_path, monkeypatch, capsys, "--configfile", str(path))
    assert code == 2 and str(path) in err and "no config keys" in err


@pytest.mark.parametrize(("text", "kind"), [("- train\n- seed\n", "list"), ("splits.folds=3\n", "str")])
def test_an_overlay_that_is_not_a_mapping_is_refused_naming_the_file(tmp_path, monkeypatch, capsys, text, kind):
    path = tmp_path / "notamap.yaml"
    path.write_text(text)
    code, err = cli(tmp_path, monkeypatch, capsys, "--configfile", str(path))
    assert code == 2 and str(path) in err and f"got {kind}" in err


# 3. settings that would fail only inside a job


@pytest.mark.parametrize("section", ["train", "segmentation"])
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CUDA", "cuda:", "mps"])
def test_an_unknown_device_is_refused(section, device):
    refused({section: {"device": device}}, f"'{section}.device'", repr(device), "cuda:N")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_known_devices_are_accepted(device):
    assert effective({"train": {"device": device}, "segmentation": {"device": device}})["train"]["device"] == device


def test_a_crop_larger_than_the_slices_is_refused():
    refused({"train": {"crop_size": 256}}, "'train.crop_size'", "(256)", "preprocess.image_size = 128")


def test_a_crop_too_small_for_the_generator_is_refused():
    refused({"train": {"crop_size": 8, "n_downsampling": 3}}, "'train.crop_size'", "at least 16")


def test_a_generator_too_deep_for_the_slices_is_refused():
    refused(
        {"preprocess": {"image_size": 32}, "train": {"n_downsampling": 5}}, "preprocess.image_size", "n_downsampling"
    )


@pytest.mark.parametrize(
    ("train", "fragments"),
    [
        ({"n_layers": 7}, ["(7)", "128 x 128", "n_layers <= 5"]),
        ({"n_layers": 4, "crop_size": 32, "n_downsampling": 2}, ["(4)", "train.crop_size = 32", "n_layers <= 3"]),
    ],
)
def test_a_discriminator_too_deep_for_the_training_slices_is_refused(train, fragments):
    refused({"train": train}, "'train.n_layers'", "patch-score map would be empty", *fragments)


def test_a_unet_too_deep_for_the_slices_is_refused():
    refused({"segmentation": {"depth": 7}}, "'segmentation.depth'", "(7)", "depth <= 6")
    small = {"preprocess": {"image_size": 16}, "train": {"n_downsampling": 2, "n_layers": 2}}
    refused(merge(small, {"segmentation": {"depth": 4}}), "'segmentation.depth'", "16 x 16", "depth <= 3")


def test_identity_loss_and_context_slices_are_refused_at_parse_time():
    """TrainSettings refused them only when the workflow built a job's parameters; `mr2ct validate` accepted."""
    refused(
        {"train": {"lambda_identity": 0.5, "context_slices": 1}}, "'train.lambda_identity'", "'train.context_slices'"
    )


def test_the_discriminator_arithmetic_agrees_with_the_network():
    from mr2ct.config import patch_discriminator_output_size
    from mr2ct.models.networks import PatchDiscriminator

    for n_layers in range(1, 8):
        net = PatchDiscriminator(1, ndf=1, n_layers=n_layers)
        for size in range(1, 300):
            assert patch_discriminator_output_size(size, n_layers) == net.output_size(size), (size, n_layers)


def test_the_fit_checks_agree_with_the_networks_on_the_boundary():
    """What the config accepts runs a training-mode forward pass; what it refuses would fail in it."""
    import torch

    from mr2ct.models.networks import PatchDiscriminator, UNet2d

    base = {"preprocess": {"image_size": 16}, "train": {"n_downsampling": 1, "n_layers": 1}}
    for depth in range(1, 6):
        try:
            effective(merge(base, {"segmentation": {"depth": depth}}))
            accepted = True
        except InputError:
            accepted = False
        try:
            UNet2d(1, 2, base=1, depth=depth).train()(torch.zeros(2, 1, 16, 16))
            runs = True
        except ValueError:
            runs = False
        assert accepted == runs, depth
    for crop in (4, 8, 12, 16):
        for n_layers in range(1, 4):
            try:
                effective(merge(base, {"train": {"crop_size": crop, "n_layers": n_layers}}))
                accepted = True
            except InputError:
                accepted = False
            try:
                PatchDiscriminator(1, ndf=1, n_layers=n_layers).train()(torch.zeros(1, 1, crop, crop))
                runs = True
            except ValueError:
                runs = False
            assert accepted == runs, (crop, n_layers)


def test_the_workflow_parse_reads_overlays_as_strictly_as_mr2ct_validate(tmp_path):
    """Snakemake reads --configfile overlays with its own YAML loader (a repeated key: the last wins;
    010: octal 8); the workflow reads them again with the project's, so its parse refuses them too."""
    import subprocess

    from .conftest import snakemake_cmd

    for text, expected in (
        ("train:\n  steps: 10\ntrain:\n  steps: 20\n", "config key 'train' is given twice (lines 1 and 3)"),
        ("train:\n  steps: 010\n", "leading zero"),
    ):
        overlay = tmp_path / "overlay.yaml"
        overlay.write_text(text)
        done = subprocess.run(
            snakemake_cmd(tmp_path / "work", "-n", "--configfile", str(overlay)), capture_output=True, text=True
        )
        assert done.returncode != 0 and expected in done.stderr + done.stdout, done.stderr[-2000:]
