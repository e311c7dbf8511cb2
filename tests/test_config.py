"""Configuration files: the shipped configs validate, defaults are filled, overlays merge."""

from __future__ import annotations

import pytest

from mr2ct.config import load_config, load_yaml, merge, validate_config
from mr2ct.io import InputError

from .conftest import ROOT


@pytest.mark.parametrize("overlay", [None, "configs/tiny.yaml", "configs/paper.yaml"])
def test_shipped_configs_validate(overlay):
    config = load_yaml(ROOT / "config.yaml")
    if overlay:
        config = merge(config, load_yaml(ROOT / overlay))
    validate_config(config)
    assert config["preprocess"]["image_size"] % 4 == 0


def test_defaults_are_filled_from_the_schema():
    config = validate_config({"seed": 1, "data": {"source": "phantom"}, "preprocess": {}, "splits": {}, "models": ["cyclegan"]})
    assert config["splits"]["pairing"] == "disjoint"
    assert config["data"]["phantom"]["subjects"] == 12


def test_every_problem_is_listed_with_its_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: -1\ndata: {source: phantom, phantom: {subjects: two}}\npreprocess: {image_size: 30}\nsplits: {}\nmodels: [cyclegan]\n")
    with pytest.raises(InputError) as err:
        load_config(path)
    text = str(err.value)
    for key in ("'seed'", "'data.phantom.subjects'", "'preprocess.image_size'"):
        assert key in text


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(InputError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
