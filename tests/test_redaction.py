"""Secrets in a run's settings (e.g. a judge reward's API key) are in none of its records."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from medzero_pl.config import compose
from medzero_pl.fit import build
from medzero_pl.redaction import REDACTED, redact_secrets
from medzero_pl.run import cli_config
from tests.toy_task import letter_share, toy_overrides

SECRET = "sk-test-0123456789abcdef"


def judged_letter_share(api_key: str, token: str = "") -> Any:
    """A reward factory that, like an LLM-judge reward, takes credentials as kwargs."""
    assert api_key == SECRET  # the reward itself gets the real key
    return letter_share


def test_only_strings_under_credential_names_are_hidden():
    tree = {
        "api_key": SECRET,
        "kwargs": {"token": "abc", "pad_token_id": 3, "difficulty_key": "level", "password": "p"},
        "rewards": [{"name": "x", "kwargs": {"apiKey": "q", "judge_url": "http://h"}}],
    }
    out = redact_secrets(tree, env={"JUDGE_KEY": SECRET})
    assert out["api_key"] == "${oc.env:JUDGE_KEY}"  # a record that still runs where the variable is set
    assert out["kwargs"] == {"token": REDACTED, "pad_token_id": 3, "difficulty_key": "level", "password": REDACTED}
    assert out["rewards"][0]["kwargs"] == {"apiKey": REDACTED, "judge_url": "http://h"}
    assert tree["api_key"] == SECRET  # the input is left as it was


@pytest.mark.slow
def test_an_api_key_from_the_environment_is_in_no_record_of_the_run(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDZERO_TEST_JUDGE_KEY", SECRET)
    reward = (
        "[{name: 'tests.test_redaction:judged_letter_share', kwargs: {api_key: '${oc.env:MEDZERO_TEST_JUDGE_KEY}'}}]"
    )
    cfg = compose(toy_overrides(toy, tmp_path / "run", **{"trainer.max_steps": 1, "rewards": reward}))
    trainer, module, datamodule = build(cfg)
    trainer.fit(module, datamodule=datamodule)

    records = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    names = {p.name for p in records}
    assert {"config.yaml", "cli_config.yaml", "hparams.yaml", "last.ckpt"} <= names
    leaked = [p.name for p in records if SECRET.encode() in p.read_bytes()]
    assert leaked == []
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["rewards"][0]["kwargs"]["api_key"] == REDACTED
    assert "${oc.env:MEDZERO_TEST_JUDGE_KEY}" in (tmp_path / "run" / "config.yaml").read_text()
    assert SECRET not in str(cli_config(cfg))
