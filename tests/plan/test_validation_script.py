"""`scripts/plan_validation.py` turns a benchmark's `--json` file into the planner's prediction for the same run."""

from __future__ import annotations

import importlib.util
import json

from medzero_pl.config import compose
from medzero_pl.paths import CONF_DIR
from medzero_pl.plan.memory import estimate, peak, shape_from_config
from medzero_pl.plan.run import run_shape

SCRIPT = CONF_DIR.parent / "scripts" / "plan_validation.py"
MODEL = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}
SETTING = {
    "prompts": 2,
    "generations": 4,
    "max_new_tokens": 32,
    "beta": 0.0,
    "micro_batch": 8,
    "no_shared_prompt": False,
    "no_fused_head": False,
    "dtype": "float32",
    "gradient_checkpointing": False,
    "kv_cache_gib": None,
    "fixed_length": True,
}


def test_prediction_is_the_planners_for_the_benchmarks_settings(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("plan_validation", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    run = {"engine": "hf", "model_config": MODEL, "peak_rss_mb": 1000.0, "steps": [{"prompt_lengths": [50, 70]}]}
    path = tmp_path / "hf.json"
    path.write_text(json.dumps({"setting": SETTING, "runs": {"medzero": [run], "trl": [run]}}))
    [row] = script.rows(path)
    cfg = compose(
        ["rollout.engine=hf", "data.max_prompt_length=70", "grpo.max_completion_length=32", "grpo.micro_batch_size=8"]
    )
    expected = peak(estimate(shape_from_config(MODEL), run_shape(cfg, "llama", "cpu"))) / 2**20
    assert row["predicted_mb"] == expected and row["measured_mb"] == 1000.0
    assert script.main([str(path)]) == 0
    line = f"| hf.json | 0.1M | hf | 2 x 4 | 70 + 32 | 8 | off | {expected:.0f} | 1000 | {expected / 1000:.2f} |"
    assert line in capsys.readouterr().out
