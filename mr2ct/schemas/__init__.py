"""The configuration schema (``config.schema.yaml`` beside this file): the one description of
every config key, its type, range and default, read by the config layer and by data checks alike.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = ["SCHEMA_PATH", "schema", "schema_tree"]

SCHEMA_PATH = Path(str(resources.files("mr2ct") / "schemas" / "config.schema.yaml"))


def schema() -> dict[str, Any]:
    """The configuration JSON schema as a dictionary (a fresh copy)."""
    return copy.deepcopy(schema_tree())


@functools.cache
def schema_tree() -> dict[str, Any]:
    """The schema, read once and shared: callers must not modify it (:func:`schema` gives a copy)."""
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return yaml.safe_load(handle)
