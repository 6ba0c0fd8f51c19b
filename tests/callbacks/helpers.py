"""Hand-built step outputs in the shape `GRPOModule.training_step` returns."""

from __future__ import annotations

from typing import Any


def step_outputs(completions: list[str], **fields: Any) -> dict[str, Any]:
    n = len(completions)
    out = {
        "prompts": fields.pop("prompts", ["Q?"] * n),
        "completions": completions,
        "completion_ids": [[0] * max(1, len(c) // 4) for c in completions],
        "completion_lengths": fields.pop("lengths", [max(1, len(c) // 4) for c in completions]),
        "prompt_lengths": fields.pop("prompt_lengths", [10] * n),
        "truncated": fields.pop("truncated", [False] * n),
        "rewards": fields.pop("rewards", {"mcq_accuracy": [1.0] * n}),
        "reward": fields.pop("reward", [1.0] * n),
        "advantages": fields.pop("advantages", [0.0] * n),
        "columns": fields.pop("columns", {}),
        "num_generations": fields.pop("num_generations", n),
    }
    out["finish_reasons"] = ["length" if t else "stop" for t in out["truncated"]]
    assert not fields, fields
    return out
