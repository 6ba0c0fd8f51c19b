"""Secrets stay out of every record of a run (config.yaml, cli_config.yaml, hparams.yaml, checkpoints, W&B).

A string under a key named like a credential (`api_key`, `token`, `secret`, `password`, ...; e.g. a judge reward's
kwargs) is written as `${oc.env:NAME}` when it is the value of an environment variable `NAME` (so a record that was
given `${oc.env:NAME}` still runs), and as `REDACTED` otherwise. Numbers are never secrets (`pad_token_id` stays).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "<redacted>"
_SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(?:api_?key|access_?key|secret_?key|private_?key|token|secret|password|passwd|credentials?|auth)$"
    r"|^key$",
    re.IGNORECASE,
)


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def redact_secrets(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """A copy of a nested dict/list with secret strings replaced; `env` (e.g. `os.environ`) names where they came
    from, else every one becomes `REDACTED` (what checkpoints hold, so that they compare equal across sessions)."""
    if isinstance(value, Mapping):
        return {k: _hide(v, env) if is_secret_key(k) else redact_secrets(v, env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_secrets(v, env) for v in value]
    return value


def _hide(value: Any, env: Mapping[str, str] | None) -> Any:
    if not isinstance(value, str) or not value or value == REDACTED or value.startswith("${"):
        return redact_secrets(value, env)
    names = sorted(name for name, v in (env or {}).items() if v == value)
    return f"${{oc.env:{names[0]}}}" if names else REDACTED
