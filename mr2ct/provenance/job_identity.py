"""The identity of the job running in this process or its parent: record id, commit, config hash, rule.

:mod:`mr2ct.provenance.records` publishes it when a job starts and withdraws it when its record
is written; figures (:mod:`mr2ct.provenance.figure_identity`) read it. Child processes see it
through ``$MR2CT_PROVENANCE_IDENTITY``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping

__all__ = ["ENV_IDENTITY", "current_identity", "publish", "withdraw"]

ENV_IDENTITY = "MR2CT_PROVENANCE_IDENTITY"


def publish(identity: Mapping[str, str]) -> None:
    """Make ``identity`` the running job's, for this process and the processes it starts."""
    os.environ[ENV_IDENTITY] = json.dumps(dict(identity))


def withdraw() -> None:
    """No job runs in this process any more."""
    os.environ.pop(ENV_IDENTITY, None)


def current_identity() -> dict[str, str] | None:
    """The running job's identity, or ``None`` outside a job."""
    raw = os.environ.get(ENV_IDENTITY)
    if raw:
        with contextlib.suppress(ValueError):
            value = json.loads(raw)
            if isinstance(value, dict) and value.get("record"):
                return value
    return None
