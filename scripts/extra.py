"""Print the requirements of one optional-dependency group of pyproject.toml (`make setup` installs `model` with
`--no-deps`, which an extra cannot say by itself)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def main(name: str) -> int:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    print("\n".join(project["optional-dependencies"][name]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
