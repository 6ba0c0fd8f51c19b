"""Write a composed medzero config in LightningCLI layout (for `python -m medzero_pl fit --config ...`).

python scripts/write_cli_config.py conf/cli/demo.yaml                     # the embedded default
python scripts/write_cli_config.py my_run.yaml experiment=rarearena_1.5b  # any overrides
"""

from __future__ import annotations

import sys

import yaml

from medzero_pl.config import compose
from medzero_pl.run import cli_config

HEADER = """# The embedded default run (conf/config.yaml) in LightningCLI layout, generated from the same dataclasses:
#   python -m medzero_pl fit --config conf/cli/demo.yaml
# tests/test_cli.py checks that it matches `compose([])`; regenerate it with scripts/write_cli_config.py.
"""


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    path, overrides = argv[0], argv[1:]
    text = yaml.safe_dump(cli_config(compose(overrides)), sort_keys=False)
    with open(path, "w") as f:
        f.write((HEADER if not overrides else "") + text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
