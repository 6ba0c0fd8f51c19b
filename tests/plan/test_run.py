"""The planner on composed configs: the seed experiments fit the hardware they state, `fit` refuses on CUDA what
will not fit (a fake device here), and `python -m medzero_pl.plan` reports and rejects bad input."""

from __future__ import annotations

import re

import pytest
import torch

from medzero_pl import fit
from medzero_pl.config import compose
from medzero_pl.errors import UserError
from medzero_pl.paths import CONF_DIR
from medzero_pl.plan.__main__ import main
from medzero_pl.plan.memory import GIB, GPUS
from medzero_pl.plan.run import KNOWN_CONFIGS, check_fits, plan

PLANNED = re.compile(r"^# Planned for: (\d+) x (\S+) GPUs", re.MULTILINE)
GPU_EXPERIMENTS = sorted(
    path.stem
    for path in (CONF_DIR / "experiment").glob("*.yaml")
    if compose([f"experiment={path.stem}"]).model.name_or_path in KNOWN_CONFIGS
    and compose([f"experiment={path.stem}"]).trainer.accelerator == "gpu"
)


def test_every_seed_experiment_is_covered():
    assert (
        sorted(
            ["medqa_usmle", "xpert_usmle", "medxpert", "rarearena_1.5b", "rarearena_3b", "rarearena_7b"]
            + ["medqa_usmle_lora", "medxpert_lora", "xpert_usmle_lora", "rarearena_7b_lora"]
        )
        == GPU_EXPERIMENTS
    )


@pytest.mark.parametrize("name", GPU_EXPERIMENTS)
def test_each_seed_experiment_fits_the_hardware_it_states(name):
    text = (CONF_DIR / "experiment" / f"{name}.yaml").read_text()
    stated = PLANNED.search(text)
    assert stated, f"conf/experiment/{name}.yaml states no '# Planned for: N x GPU GPUs' line"
    count, gpu = int(stated.group(1)), stated.group(2)
    cfg = compose([f"experiment={name}"])
    assert cfg.trainer.devices * cfg.trainer.num_nodes == count
    p = plan(cfg, "gpu", int(GPUS[gpu] * GIB))
    assert p.verdict.fits, (name, p.verdict.problems)


def test_medqa_usmle_as_the_seed_ran_it_is_refused_on_a_40_gib_gpu_with_the_fix():
    cfg = compose(["experiment=medqa_usmle", "rollout.gpu_memory_utilization=0.5"])
    with pytest.raises(UserError, match=r"does not fit.*add trainer.strategy=deepspeed_stage3_offload"):
        check_fits(cfg, 40 * GIB)
    offload = ["trainer.strategy=deepspeed_stage3_offload", "rollout.gpu_memory_utilization=0.5"]
    check_fits(compose(["experiment=medqa_usmle", *offload]), 40 * GIB)  # as its file says
    check_fits(compose(["experiment=medqa_usmle", "plan.check=false", "rollout.gpu_memory_utilization=0.5"]), 40 * GIB)


@pytest.fixture
def fake_cuda(monkeypatch):
    """A machine with four 40 GiB GPUs, as far as `fit` can tell; building the run is replaced by a marker."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (40 * GIB, 40 * GIB))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)

    def built(cfg):
        raise SystemExit("built")

    monkeypatch.setattr(fit, "build", built)


def test_fit_on_cuda_refuses_a_run_that_does_not_fit_in_one_line(fake_cuda, capsys):
    assert fit.main(["experiment=medqa_usmle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the planner predicts this run does not fit")
    assert "add rollout.gpu_memory_utilization=0.5 trainer.strategy=deepspeed_stage3_offload;" in err[0]
    assert "plan.check=false" in err[0]


def test_fit_on_cuda_builds_with_plan_check_false_or_when_it_fits(fake_cuda):
    with pytest.raises(SystemExit, match="built"):
        fit.main(["experiment=medqa_usmle", "plan.check=false"])
    with pytest.raises(SystemExit, match="built"):
        fit.main(["experiment=rarearena_1.5b"])


def test_fit_on_cpu_never_plans(monkeypatch):
    monkeypatch.setattr(fit, "check_fits", lambda *a, **k: pytest.fail("planned on CPU"))
    monkeypatch.setattr(fit, "build", lambda cfg: (_ for _ in ()).throw(SystemExit("built")))
    with pytest.raises(SystemExit, match="built"):
        fit.main([])


def test_cli_prints_every_term_and_the_fix(capsys):
    assert main(["experiment=medqa_usmle", "rollout.gpu_memory_utilization=0.5", "--gpu", "a100-40"]) == 1
    out = capsys.readouterr().out
    for term in (
        "policy parameters",
        "gradients",
        "optimizer state",
        "master weights",
        "reference",
        "activations",
        "gradient checkpointing on (with:",
        "LM head",
        "DeepSpeed",
        "vLLM engine",
        "peak per rank",
    ):
        assert term in out
    assert "cheapest change: add trainer.strategy=deepspeed_stage3_offload" in out
    assert main(["experiment=rarearena_1.5b", "--gpu=40"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("fits")


def test_cli_plans_a_cpu_run_against_this_machines_ram(capsys):
    assert main(["rollout.engine=hf"]) == 0
    out = capsys.readouterr().out
    assert "(1 ranks, cpu)" in out and "process (python, torch, libraries)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--gpu", "a100-30"],
            "error: --gpu 'a100-30': expected one of a100-40, a100-80, h100-80, h200 or a size in GiB",
        ),
        (["--gpu"], "error: --gpu: expected a GPU name or a size in GiB after it"),
        (["--devices", "4"], "error: --devices: unknown option"),
        (["grpo.num_generations=x"], "error: override 'grpo.num_generations=x'"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


def test_a_vllm_server_on_other_gpus_is_suggested_when_it_is_enough():
    p = plan(compose(["experiment=medqa_usmle"]), "gpu", 56 * GIB)
    assert p.fix == ("rollout.engine=vllm_server",)
    served = plan(compose(["experiment=medqa_usmle", "rollout.engine=vllm_server"]), "gpu", 56 * GIB)
    assert served.verdict.fits and not any(t.name == "vLLM engine" for t in served.verdict.terms)
