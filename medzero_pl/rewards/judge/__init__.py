"""An LLM judge with the RareArena rubric: the rubric (``rubric``, pure), the client (``client``: ``openai``
transport, disk cache, retries) and the ``diagnosis_judge`` training reward (``reward``: a bounded pool, a per-step
deadline, ``diagnosis_match`` for what the judge leaves unscored). Evaluation uses the same client
(:mod:`medzero_pl.eval.judge`)."""

from medzero_pl.rewards.judge.client import JudgeClient, Verdict
from medzero_pl.rewards.judge.rubric import RUBRIC_VERSION, SYSTEM, cache_key, judge_prompt, parse_scores

__all__ = ["RUBRIC_VERSION", "SYSTEM", "JudgeClient", "Verdict", "cache_key", "judge_prompt", "parse_scores"]
