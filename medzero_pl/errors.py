"""Mistakes a user can fix (a setting, a data file, a model path, a checkpoint, a run directory).

Both entry points print such an error as one ``error: ...`` line and exit with code 2; ``MEDZERO_DEBUG=1`` shows
the traceback as well. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

USAGE_EXIT = 2


class UserError(ValueError):
    """A problem in what the user asked for, worded so that the message alone says how to fix it."""


def report_user_errors(run: Callable[[], int]) -> int:
    """Call ``run``; a `UserError` becomes one ``error:`` line on stderr and exit code 2."""
    try:
        return run()
    except UserError as err:
        if os.environ.get("MEDZERO_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return USAGE_EXIT


class ConfigError(UserError):
    """A configuration problem, worded for the person who typed the override."""


def expect(ok: bool, key: str, value: Any, expected: str) -> list[str]:
    """No problem when `ok`, else the one line `key=value: expected ...` that configuration checks collect."""
    return [] if ok else [f"{key}={value!r}: expected {expected}"]
