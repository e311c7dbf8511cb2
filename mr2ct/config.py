"""Workflow configuration: loading, schema validation with defaults, and cohort-level checks.

The schema (``mr2ct/schemas/config.schema.yaml``, shipped inside the package) is the
single description of every key. Validation fills defaults, rejects unknown
keys and wrong types, and raises :class:`~mr2ct.data.io.InputError` with the
offending key's dotted path, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import copy
import functools
import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mr2ct.data.io import InputError
from mr2ct.schemas import SCHEMA_PATH, schema, schema_tree

__all__ = [
    "SCHEMA_PATH",
    "check_section",
    "load_config",
    "load_yaml",
    "merge",
    "parse_value",
    "patch_discriminator_output_size",
    "schema",
    "section_defaults",
    "validate_config",
]


@functools.cache
def section_defaults(name: str) -> dict[str, Any]:
    """The schema's default of every key of config section ``name`` (e.g. ``train``)."""
    properties = schema_tree()["properties"][name]["properties"]
    return {key: copy.deepcopy(prop["default"]) for key, prop in properties.items() if "default" in prop}


@functools.cache
def _section_validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(schema_tree()["properties"][name])


def check_section(name: str, values: dict[str, Any]) -> None:
    """Check the keys of config section ``name`` against the schema (types, ranges, allowed values)
    and the rules between them that a schema cannot express; raise :class:`InputError` naming
    every offending key. The one place a setting's range is checked, for configs and for
    settings built in code alike."""
    lines = [f"config key '{name}.{key}': {message}" for key, message in _nonfinite(values)]
    errors = sorted(_section_validator(name).iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
    lines += [f"config key '{name}.{_key_path(e)}': {_message(e)}" for e in errors if not _is_nonfinite(e.instance)]
    if lines:
        raise InputError("invalid settings:\n  " + "\n  ".join(lines))
    if name == "train":
        _check_train(values)


def _check_train(values: dict[str, Any]) -> None:
    """The rules between keys of ``train`` (on their own; :func:`_check_semantics` checks them against the slices)."""
    crop, n_down = values.get("crop_size"), values.get("n_downsampling")
    if crop and n_down is not None:
        multiple = 2**n_down
        if crop % multiple:
            raise InputError(
                f"config key 'train.crop_size' ({crop}) must be a multiple of "
                f"2^train.n_downsampling = {multiple} (the generator halves the slices that often)"
            )
        if crop < 2 * multiple:
            raise InputError(
                f"config key 'train.crop_size' ({crop}) must be 0 (whole slices) or at least {2 * multiple} for "
                f"train.n_downsampling = {n_down}: the generator's bottleneck needs at least 2 x 2 pixels"
            )
    if values.get("context_slices") and values.get("lambda_identity"):
        raise InputError(
            "config keys 'train.lambda_identity' and 'train.context_slices' exclude each other: the identity "
            "loss feeds a CT slice to G_CT, which takes a stack of MR slices in 2.5D"
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
    """Turn numeric/boolean strings into numbers/booleans where the schema asks for them, and
    whole numbers written as floats (``2.0``, ``1e3``) into integers where it asks for an integer.

    Snakemake's ``--config key={nested: [1, 2]}`` delivers nested values as
    strings; without this, a command-line override of a list of sizes would fail.
    YAML reads ``1e3`` as a string and ``1.0e+3`` as a float; a count written either way
    means 1000. Fractional counts stay as they are and are refused by the schema.
    """
    if isinstance(instance, dict) and "properties" in schema_:
        for key, value in instance.items():
            sub = schema_["properties"].get(key)
            if sub is not None:
                instance[key] = _coerce_strings(value, sub)
        return instance
    if isinstance(instance, list) and isinstance(schema_.get("items"), dict):
        return [_coerce_strings(v, schema_["items"]) for v in instance]
    types = schema_.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(instance, float) and "integer" in types and "number" not in types:
        return int(instance) if math.isfinite(instance) and instance.is_integer() else instance
    if isinstance(instance, str):
        text = instance.strip()
        try:
            if "integer" in types and text.lstrip("+-").isdigit():
                return int(text)
            if "integer" in types and "number" not in types:
                number = float(text)
                return int(number) if math.isfinite(number) and number.is_integer() else instance
            if "number" in types:
                return float(text)
        except ValueError:
            return instance
        if "boolean" in types and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if "null" in types and text.lower() in ("null", "none", "~"):
            return None
    return instance


def _is_nonfinite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _nonfinite(instance: Any, path: str = "") -> list[tuple[str, str]]:
    """``(dotted key, message)`` for every NaN or infinity in ``instance``: the schema's ranges cannot
    refuse NaN (every comparison with it is false, so ``minimum``/``maximum`` pass), and a NaN
    tolerance or weight would silently switch off what it controls."""
    if _is_nonfinite(instance):
        return [(path, f"got {instance}; expected a finite number (NaN and infinity are not allowed)")]
    if isinstance(instance, dict):
        return [hit for key, value in instance.items() for hit in _nonfinite(value, f"{path}.{key}" if path else key)]
    if isinstance(instance, list):
        return [hit for i, value in enumerate(instance) for hit in _nonfinite(value, f"{path}[{i}]")]
    return []


def _message(error: jsonschema.ValidationError) -> str:
    """A schema error's message, with what YAML did when that explains it."""
    expected = error.schema.get("type") if error.validator == "type" else None
    if isinstance(error.instance, bool) and expected in ("integer", "number"):
        return (
            f"got the boolean {str(error.instance).lower()} (YAML reads yes/no/on/off/true/false as booleans); "
            f"expected {'an integer' if expected == 'integer' else 'a number'}"
        )
    if error.validator == "pattern" and "description" in error.schema:
        return f"got {error.instance!r}; expected {error.schema['description']}"
    return error.message


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
    _coerce_strings(config, schema_tree())
    validator = _Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    lines = [f"config key '{key}': {message}" for key, message in _nonfinite(config)]
    lines += [f"config key '{_key_path(e)}': {_message(e)}" for e in errors if not _is_nonfinite(e.instance)]
    if lines:
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
    _check_network_fit(config)
    data = config["data"]
    source = data["source"]
    if source == "synthrad" and not data.get("synthrad_dir"):
        raise InputError("config key 'data.synthrad_dir' must be set when data.source is 'synthrad'")
    if source == "sheet" and not data.get("sheet"):
        raise InputError("config key 'data.sheet' must be set when data.source is 'sheet'")
    for key, sources in _SOURCE_KEYS.items():
        if data.get(key) and source not in sources:
            value = "true" if data[key] is True else repr(data[key])
            raise InputError(
                f"config key 'data.{key}' is set ({value}) but has no effect with 'data.source: {source}' "
                f"(it is read for source {' or '.join(sources)} only): remove data.{key} or change data.source"
            )
    if config["splits"]["pairing"] == "disjoint" and min(config["splits"]["sizes"]) < 2:
        raise InputError(
            "config key 'splits.sizes': with pairing 'disjoint' every size needs at least 2 subjects "
            f"(one for MR, one for CT), got {config['splits']['sizes']}"
        )


#: Keys of ``data`` read for some sources only: set for another source, they would be ignored silently.
_SOURCE_KEYS = {
    "synthrad_dir": ("synthrad",),
    "sheet": ("sheet",),
    "allow_absolute_paths": ("sheet",),
    "labels_table": ("synthrad", "sheet"),
    "labels_dir": ("synthrad", "sheet"),
}


def patch_discriminator_output_size(size: int, n_layers: int) -> int:
    """Side of the patch-score map of :class:`mr2ct.models.networks.PatchDiscriminator` for an input side
    ``size`` (0: empty), by arithmetic (no torch): ``n_layers`` 4x4 convolutions of stride 2,
    then two of stride 1, all with zero padding 1."""
    for stride in [2] * n_layers + [1, 1]:
        size = (size + 2 - 4) // stride + 1
        if size < 1:
            return 0
    return size


def _check_network_fit(config: dict[str, Any]) -> None:
    """The networks fit the slices: what would otherwise fail in the first step of a training job."""
    size, train, seg = config["preprocess"]["image_size"], config["train"], config["segmentation"]
    crop = train["crop_size"]
    if crop > size:
        raise InputError(
            f"config key 'train.crop_size' ({crop}) is larger than the training slices "
            f"(preprocess.image_size = {size}); use 0 (whole slices) or a crop up to {size}"
        )
    side, what = (crop, f"train.crop_size = {crop}") if crop else (size, f"preprocess.image_size = {size}")
    if patch_discriminator_output_size(side, train["n_layers"]) < 1:
        fits = [n for n in range(1, train["n_layers"]) if patch_discriminator_output_size(side, n) >= 1]
        raise InputError(
            f"config key 'train.n_layers' ({train['n_layers']}) is too deep for {side} x {side} training slices "
            f"({what}): the discriminator's patch-score map would be empty; "
            + (f"use n_layers <= {fits[-1]} or larger slices" if fits else "use larger slices")
        )
    depth = seg["depth"]
    if -(-size // 2**depth) < 2:
        fits = [d for d in range(1, depth) if -(-size // 2**d) >= 2]
        raise InputError(
            f"config key 'segmentation.depth' ({depth}) is too deep for {size} x {size} slices "
            f"(preprocess.image_size): {depth} halvings leave under 2 x 2 pixels at the U-Net's bottleneck; "
            + (f"use depth <= {fits[-1]} or larger slices" if fits else "use larger slices")
        )


def load_config(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a YAML config file, deep-merge ``overrides`` into it, validate, and return it."""
    config = load_yaml(path)
    if overrides:
        config = merge(config, overrides)
    return validate_config(config)


class _YamlTrap(Exception):
    """YAML that reads as something else than it looks (a repeated key, an octal or base-60 number)."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


_OCTAL_11 = re.compile(r"[-+]?0[0-7_]+")  # YAML 1.1 octal: 010 is 8


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what it would otherwise read silently and differently from
    what was meant: a key repeated in one mapping (PyYAML keeps the last), an integer with a
    leading zero (YAML 1.1 octal: ``010`` is 8) and a base-60 number (``1:30`` is 90)."""

    root = ""  # dotted key of the document (for a single value given on a command line)

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._paths: dict[int, str] = {}
        self._note_paths(node, self.root)
        return self.construct_document(node)

    def _note_paths(self, node: yaml.Node, path: str) -> None:
        if id(node) in self._paths:  # an alias: already seen (and maybe recursive)
            return
        self._paths[id(node)] = path
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                self._note_paths(value, f"{path}.{name}" if path else name)
        elif isinstance(node, yaml.SequenceNode):
            for i, value in enumerate(node.value):
                self._note_paths(value, f"{path}[{i}]")

    def _key(self, node: yaml.Node) -> str:
        return self._paths.get(id(node)) or "<top level>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": merged keys may be overridden
                    continue
                key = self.construct_object(key_node, deep=deep)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                    seen[key] = line
                except TypeError:  # an unhashable key: PyYAML refuses it itself
                    continue
                if first is not None:
                    parent = self._paths.get(id(node))
                    raise _YamlTrap(
                        f"config key '{f'{parent}.{key}' if parent else key}' is given twice (lines {first} and "
                        f"{line}); YAML would keep the last one silently: remove one of them"
                    )
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = node.value
        if _OCTAL_11.fullmatch(text):
            value, decimal = super().construct_yaml_int(node), int(text.replace("_", ""))
            raise _YamlTrap(
                f"config key '{self._key(node)}': {text} has a leading zero, which YAML 1.1 reads as the octal "
                f"number {value}; write {value}" + ("" if value == decimal else f", or {decimal} without the zero"),
                node.start_mark.line + 1,
            )
        if ":" in text:
            value = super().construct_yaml_int(node)
            raise _YamlTrap(
                f"config key '{self._key(node)}': {text} is a base-60 number in YAML 1.1 (read as {value}); "
                f"write {value}, or quote it if text is meant",
                node.start_mark.line + 1,
            )
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        if ":" in node.value:
            value = super().construct_yaml_float(node)
            raise _YamlTrap(
                f"config key '{self._key(node)}': {node.value} is a base-60 number in YAML 1.1 (read as {value}); "
                f"write {value}, or quote it if text is meant",
                node.start_mark.line + 1,
            )
        return super().construct_yaml_float(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and the key and line at fault)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: configuration file not found")
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except _YamlTrap as exc:
        raise InputError(f"{path}{'' if exc.line is None else f', line {exc.line}'}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if data is None or data == {}:
        raise InputError(
            f"{path}: the file has no config keys (it is empty, only comments or an empty mapping); "
            "expected a mapping of config keys, e.g. 'train: {steps: 100}'"
        )
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def parse_value(text: str, key: str = "") -> Any:
    """A config value given as YAML text (``mr2ct validate --set KEY=VALUE``), read as :func:`load_yaml` reads
    files (a leading zero or a base-60 number is refused, naming ``key``)."""
    loader = _StrictLoader(text)
    loader.root = key
    try:
        return loader.get_single_data()
    except _YamlTrap as exc:
        raise InputError(str(exc)) from exc
    except yaml.YAMLError as exc:
        raise InputError(f"config key '{key}': '{text}' is not valid YAML ({exc})") from exc
    finally:
        loader.dispose()


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
