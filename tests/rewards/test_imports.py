"""The rewards package imports the standard library and rapidfuzz only (STYLE.md: imports point downward)."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "medzero_pl" / "rewards"
ALLOWED_THIRD_PARTY = {"rapidfuzz", "lingua", "openai"}  # lingua, openai (the judge): imported lazily in a function
# medzero_pl.errors is a standard-library-only leaf: the base class every user-facing error shares.
ALLOWED_PROJECT = ("medzero_pl.rewards", "medzero_pl.errors")


def test_modules_import_only_the_standard_library_rapidfuzz_and_this_package():
    for path in PACKAGE.rglob("*.py"):  # subpackages (diagnosis/) too
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY or top == "medzero_pl", (
                    f"{path.name} imports {name}"
                )
                assert not name.startswith("medzero_pl.") or name.startswith(ALLOWED_PROJECT), (
                    f"{path.name} imports {name}: rewards must not depend on other medzero_pl packages"
                )


def test_importing_the_package_loads_no_heavy_dependency():
    code = "import sys, medzero_pl.rewards; print([m for m in ('torch', 'lightning', 'numpy') if m in sys.modules])"
    root = PACKAGE.parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
