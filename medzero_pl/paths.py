"""Where the package finds its configuration tree: `conf/` beside the package, or `$MEDZERO_CONF_DIR`.

A leaf (standard library only), so the config assembler and the benchmark registry (prompt templates) both read it.
"""

from __future__ import annotations

import os
from pathlib import Path

CONF_DIR = Path(os.environ.get("MEDZERO_CONF_DIR", Path(__file__).resolve().parents[1] / "conf"))
