"""The package metadata builds without deprecation warnings on current setuptools."""

from __future__ import annotations

import tomllib

from tests.strategies.launch import ROOT


def test_the_license_is_an_spdx_expression_not_the_deprecated_table():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in build["requires"]  # the first setuptools that reads an SPDX string (PEP 639)
