"""Workflow configuration: loading, schema validation with defaults, and cohort-level checks.

The schema (``mr2ct/schemas/config.schema.yaml``, shipped inside the package) is the
single description of every key. Validation fills defaults, rejects unknown
keys and wrong types, and raises :class:`~mr2ct.io.InputError` with the
offending key's dotted path, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import functools
import os
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .io import InputError

__all__ = [
    "SCHEMA_PATH",
    "check_section",
    "load_config",
    "load_yaml",
    "merge",
    "schema",
    "section_defaults",
    "validate_config",
]

SCHEMA_PATH = Path(str(resources.files("mr2ct") / "schemas" / "config.schema.yaml"))


def schema() -> dict[str, Any]:
    """The configuration JSON schema as a dictionary (a fresh copy)."""
    return copy.deepcopy(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.cache
def section_defaults(name: str) -> dict[str, Any]:
    """The schema's default of every key of config section ``name`` (e.g. ``train``)."""
    properties = _schema()["properties"][name]["properties"]
    return {key: copy.deepcopy(prop["default"]) for key, prop in properties.items() if "default" in prop}


@functools.cache
def _section_validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_schema()["properties"][name])


def check_section(name: str, values: dict[str, Any]) -> None:
    """Check the keys of config section ``name`` against the schema (types, ranges, allowed values)
    and the rules between them that a schema cannot express; raise :class:`InputError` naming
    every offending key. The one place a setting's range is checked, for configs and for
    settings built in code alike."""
    errors = sorted(_section_validator(name).iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"config key '{name}.{_key_path(e)}': {e.message}" for e in errors]
        raise InputError("invalid settings:\n  " + "\n  ".join(lines))
    if name == "train" and "crop_size" in values and "n_downsampling" in values:
        multiple = 2 ** values["n_downsampling"]
        if values["crop_size"] % multiple:
            raise InputError(
                f"config key 'train.crop_size' ({values['crop_size']}) must be a multiple of "
                f"2^train.n_downsampling = {multiple} (the generator halves the slices that often)"
            )


def _with_defaults(validator_class):
    """A validator class that also fills ``default`` values into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, subschema in properties.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _coerce_strings(instance: Any, schema_: dict[str, Any]) -> Any:
    """Turn numeric/boolean strings into numbers/booleans where the schema asks for them.

    Snakemake's ``--config key={nested: [1, 2]}`` delivers nested values as
    strings; without this, a command-line override of a list of sizes would fail.
    """
    if isinstance(instance, dict) and "properties" in schema_:
        for key, value in instance.items():
            sub = schema_["properties"].get(key)
            if sub is not None:
                instance[key] = _coerce_strings(value, sub)
        return instance
    if isinstance(instance, list) and isinstance(schema_.get("items"), dict):
        return [_coerce_strings(v, schema_["items"]) for v in instance]
    if isinstance(instance, str):
        types = schema_.get("type", [])
        types = [types] if isinstance(types, str) else types
        text = instance.strip()
        try:
            if "integer" in types and text.lstrip("+-").isdigit():
                return int(text)
            if "number" in types:
                return float(text)
        except ValueError:
            return instance
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "null" in types and text.lower() in ("null", "none", "~"):
            return None
    return instance


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for part in error.absolute_path:
        parts.append(f"[{part}]" if isinstance(part, int) else (f".{part}" if parts else str(part)))
    return "".join(parts) or "<top level>"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` in place against the schema, filling defaults; return it.

    Raises :class:`InputError` naming the first offending key (all problems are
    listed in the message).
    """
    if not isinstance(config, dict):
        raise InputError(f"configuration must be a mapping, got {type(config).__name__}")
    _coerce_strings(config, _schema())
    validator = _Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    if errors:
        lines = [f"config key '{_key_path(e)}': {e.message}" for e in errors]
        raise InputError("invalid configuration:\n  " + "\n  ".join(lines))
    _check_semantics(config)
    return config


def _check_semantics(config: dict[str, Any]) -> None:
    """Checks a schema cannot express."""
    pre = config["preprocess"]
    hu, norm = pre["ct_hu_points"], pre["ct_norm_points"]
    if len(hu) != len(norm):
        raise InputError(
            f"config keys 'preprocess.ct_hu_points' and 'preprocess.ct_norm_points' must have the same length "
            f"({len(hu)} vs {len(norm)})"
        )
    for key, values in (("preprocess.ct_hu_points", hu), ("preprocess.ct_norm_points", norm)):
        if any(b <= a for a, b in zip(values, values[1:])):
            raise InputError(f"config key '{key}': values must increase strictly, got {values}")
    lo, hi = pre["mr_percentiles"]
    if not lo < hi:
        raise InputError(f"config key 'preprocess.mr_percentiles': lower must be below upper, got {[lo, hi]}")
    check_section("train", config["train"])
    multiple = 2 ** config["train"]["n_downsampling"]
    if pre["image_size"] % multiple:
        raise InputError(
            f"config key 'preprocess.image_size' ({pre['image_size']}) must be a multiple of "
            f"2^train.n_downsampling = {multiple} (the generator halves the slices that often)"
        )
    if pre["image_size"] < 2 * multiple:
        raise InputError(
            f"config key 'preprocess.image_size' ({pre['image_size']}) must be at least {2 * multiple} "
            f"for train.n_downsampling = {config['train']['n_downsampling']}"
        )
    data = config["data"]
    source = data["source"]
    if source == "synthrad" and not data.get("synthrad_dir"):
        raise InputError("config key 'data.synthrad_dir' must be set when data.source is 'synthrad'")
    if source == "sheet" and not data.get("sheet"):
        raise InputError("config key 'data.sheet' must be set when data.source is 'sheet'")
    if config["splits"]["pairing"] == "disjoint" and min(config["splits"]["sizes"]) < 2:
        raise InputError(
            "config key 'splits.sizes': with pairing 'disjoint' every size needs at least 2 subjects "
            f"(one for MR, one for CT), got {config['splits']['sizes']}"
        )


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, deep-merge ``overrides`` into it, validate, and return it."""
    config = load_yaml(path)
    if overrides:
        config = merge(config, overrides)
    return validate_config(config)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: configuration file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def merge_files(paths: list[str | os.PathLike]) -> dict[str, Any]:
    """YAML config files merged in order, later over earlier (as ``snakemake --configfile A B``); not validated."""
    config: dict[str, Any] = {}
    for path in paths:
        config = merge(config, load_yaml(path))
    return config


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dictionary merge (as Snakemake merges several ``--configfile``)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
