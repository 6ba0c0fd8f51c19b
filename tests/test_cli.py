"""`python -m medzero_pl fit|validate --config <run_dir>/cli_config.yaml`: LightningCLI over the same classes."""

from __future__ import annotations

import torch

from medzero_pl.__main__ import main as cli
from medzero_pl.fit import main as fit
from tests.toy_task import toy_overrides


def test_validate_and_fit_run_from_the_config_a_fit_run_wrote(toy, tmp_path):
    overrides = toy_overrides(toy, tmp_path, **{"trainer.max_steps": 2, "data.val_fraction": 0.25})
    assert fit(overrides) == 0
    config, ckpt = tmp_path / "cli_config.yaml", tmp_path / "checkpoints" / "last.ckpt"

    validated = cli(["validate", "--config", str(config), "--ckpt_path", str(ckpt)])
    assert "val/reward" in validated.trainer.callback_metrics

    cli(["fit", "--config", str(config), "--ckpt_path", str(ckpt), "--trainer.max_steps", "3"])
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 3


def test_the_shipped_cli_config_is_the_default_run():
    import yaml

    from medzero_pl.config import CONF_DIR, compose
    from medzero_pl.run import cli_config

    shipped = yaml.safe_load((CONF_DIR / "cli" / "demo.yaml").read_text())
    assert shipped == yaml.safe_load(yaml.safe_dump(cli_config(compose([]))))
