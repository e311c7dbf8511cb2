"""Configuration files: the shipped configs validate, defaults are filled, overlays merge."""

from __future__ import annotations

import pytest

from mr2ct.config import load_config, load_yaml, merge, validate_config
from mr2ct.data.io import InputError

from .conftest import ROOT


@pytest.mark.parametrize("overlay", [None, "configs/tiny.yaml", "configs/paper.yaml"])
def test_shipped_configs_validate(overlay):
    config = load_yaml(ROOT / "config.yaml")
    if overlay:
        config = merge(config, load_yaml(ROOT / overlay))
    validate_config(config)
    assert config["preprocess"]["image_size"] % 4 == 0


SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("overlay", SHIPPED)
def test_cli_validate_stacks_every_shipped_overlay_on_config_yaml(overlay, tmp_path, monkeypatch, capsys):
    """`mr2ct validate --config configs/X.yaml` means config.yaml + X, as `snakemake --configfile` does."""
    from mr2ct.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["validate", "--config", overlay, "--results", str(tmp_path / "results")]) == 0
    assert "config is valid" in capsys.readouterr().out


def test_cli_overlays_apply_in_order(tmp_path, monkeypatch, capsys):
    from mr2ct.cli import main

    monkeypatch.chdir(ROOT)
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("splits: {folds: 4}\n")
    second.write_text("splits: {folds: 2, sizes: [2]}\n")
    assert main(["splits", "--config", str(first), "--config", str(second), "--results", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert {line.split("\t")[0] for line in table.splitlines()[1:]} == {"0", "1"}


def test_defaults_are_filled_from_the_schema():
    config = validate_config(
        {"seed": 1, "data": {"source": "phantom"}, "preprocess": {}, "splits": {}, "models": ["cyclegan"]}
    )
    assert config["splits"]["pairing"] == "disjoint"
    assert config["data"]["phantom"]["subjects"] == 14


def test_every_problem_is_listed_with_its_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "seed: -1\ndata: {source: phantom, phantom: {subjects: two}}\npreprocess: {image_size: 30}\n"
        "splits: {}\nmodels: [cyclegan]\n"
    )
    with pytest.raises(InputError) as err:
        load_config(path)
    text = str(err.value)
    for key in ("'seed'", "'data.phantom.subjects'", "'preprocess.image_size'"):
        assert key in text


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_config_yaml_states_exactly_the_schema_defaults():
    """One source of each default: the schema. config.yaml writes every key out (with its
    comment) and must agree with it, so a config without a key behaves like config.yaml."""
    full = validate_config(load_yaml(ROOT / "config.yaml"))
    assert validate_config({"seed": full["seed"], "data": {"source": "phantom"}}) == full


def test_settings_take_their_defaults_and_ranges_from_the_schema():
    from mr2ct.config import section_defaults
    from mr2ct.settings import SegmentationSettings, TrainSettings

    train = TrainSettings()
    for key, value in section_defaults("train").items():
        if hasattr(train, key) and key != "gc_weight":  # a run's own GC weight: 0 unless cyclegan_gc
            assert getattr(train, key) == value, key
    seg = SegmentationSettings()
    for key, value in section_defaults("segmentation").items():
        if hasattr(seg, key):
            assert getattr(seg, key) == value, key
    with pytest.raises(InputError, match="'train.steps'"):
        TrainSettings(steps=0)
    with pytest.raises(InputError, match="'train.amp'"):
        TrainSettings(amp="fp16")
    with pytest.raises(InputError, match="'segmentation.lr'"):
        SegmentationSettings(lr=0.0)
    with pytest.raises(InputError, match="trains without the GC loss"):
        TrainSettings(model="cyclegan", gc_weight=1.0)


def test_preprocessing_settings_are_read_from_their_config_keys():
    from mr2ct.data.preprocess import PreprocessSettings

    config = validate_config(
        {
            "seed": 1,
            "data": {"source": "phantom"},
            "preprocess": {
                "image_size": 48,
                "fov_mm": 420,
                "ct_hu_points": [-1000, 0, 2000],
                "ct_norm_points": [-1, -0.2, 1],
                "mr_percentiles": [0.5, 99],
            },
            "splits": {},
            "models": ["cyclegan"],
        }
    )
    settings = PreprocessSettings.from_config(config)
    assert settings == PreprocessSettings(
        image_size=48,
        fov_mm=420.0,
        ct_hu_points=(-1000.0, 0.0, 2000.0),
        ct_norm_points=(-1.0, -0.2, 1.0),
        mr_percentiles=(0.5, 99.0),
    )
    assert isinstance(settings.image_size, int) and isinstance(settings.fov_mm, float)
    assert all(isinstance(v, float) for v in settings.ct_hu_points + settings.mr_percentiles)
