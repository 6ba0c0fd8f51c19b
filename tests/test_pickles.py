"""A crafted sharded checkpoint runs no code on `export <dir>`, `eval --ckpt <dir>` or `fit resume=<dir>`."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medzero_pl.checkpoints import policy_state
from medzero_pl.errors import UserError
from medzero_pl.export import main as export_main
from medzero_pl.pickles import check_sharded_checkpoint, load_shard
from medzero_pl.rundir import read_checkpoint_header


class Payload:
    """Unpickling this writes a marker file: what an attacker's shard would do with `weights_only=False`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def sharded_checkpoint(root: Path, model_states: object, optim_states: object) -> Path:
    """A directory laid out as DeepSpeed writes a ZeRO-3 checkpoint (`latest` names the tag folder)."""
    (root / "checkpoint").mkdir(parents=True)
    (root / "latest").write_text("checkpoint")
    torch.save(model_states, root / "checkpoint" / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    torch.save(optim_states, root / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return root


@pytest.fixture
def crafted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "marker"
    model_states = {"module": None, "state_dict": {}, "hyper_parameters": {"x": Payload(marker)}}
    return sharded_checkpoint(tmp_path / "ckpt", model_states, {"optimizer_state_dict": {}}), marker


def test_reading_the_header_for_resume_refuses_and_runs_nothing(crafted):
    path, marker = crafted
    with pytest.raises(UserError, match="builtins.exec"):
        read_checkpoint_header(path)
    assert not marker.exists()


def test_export_and_eval_loading_refuse_and_run_nothing(crafted, tmp_path, capsys):
    path, marker = crafted
    with pytest.raises(UserError, match="refused"):
        policy_state(path)
    assert export_main([str(path), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not marker.exists()


def test_a_payload_in_the_optimizer_states_is_refused_too(tmp_path):
    marker = tmp_path / "marker"
    path = sharded_checkpoint(tmp_path / "ckpt", {"module": None}, {"loss_scaler": Payload(marker)})
    with pytest.raises(UserError, match="optim_states.pt: refused"):
        check_sharded_checkpoint(path)
    assert not marker.exists()


def test_a_tag_that_leaves_the_directory_is_refused(tmp_path):
    path = sharded_checkpoint(tmp_path / "ckpt", {"module": None}, {})
    (path / "latest").write_text("../elsewhere")
    with pytest.raises(UserError, match="not a folder of"):
        check_sharded_checkpoint(path)


def test_what_deepspeed_writes_loads_with_its_classes_allowed(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    optim = {"zero_stage": ZeroStageEnum.weights, "loss_scaler": LossScaler(1.0), "fp32": torch.ones(3)}
    path = sharded_checkpoint(tmp_path / "ckpt", {"module": None, "global_step": 4}, optim)
    check_sharded_checkpoint(path)
    loaded = load_shard(path / "checkpoint" / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    assert loaded["zero_stage"] is ZeroStageEnum.weights and torch.equal(loaded["fp32"], torch.ones(3))
    assert read_checkpoint_header(path)["global_step"] == 4
