"""`python scripts/plot_run.py RUN_DIR [OUT_DIR]`: training-progress PNGs from a run's CSV logs (no W&B needed).

Writes reward, per-benchmark accuracy, completion length, truncated share, format (think) shares and language
mixing over steps to OUT_DIR (default RUN_DIR/plots); see medzero_pl/eval/plots.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing the package

from medzero_pl.eval.plots import plot_run  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2) or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 2
    written = plot_run(argv[0], argv[1] if len(argv) == 2 else None)
    if not written:
        print(f"no metrics found under {argv[0]} (expected csv/version_*/metrics.csv)", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
