"""The package metadata builds without deprecation warnings on current setuptools."""

from __future__ import annotations

import tomllib

from tests.strategies.launch import ROOT


def test_the_license_is_an_spdx_expression_not_the_deprecated_table():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert (
        "setuptools>=77" in pyproject["build-system"]["requires"]
    )  # the first setuptools that reads an SPDX string (PEP 639)
