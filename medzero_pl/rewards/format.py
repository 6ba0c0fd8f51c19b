"""Format rewards: is the completion ``<think>reasoning</think><answer>final answer</answer>``?

R1-Zero training pays for the format separately from correctness (DeepSeek-R1, section 2.2.2), so early in
training, when every completion of a group is wrong, the format still gives the group a learning signal.

With a template that ends the prompt with ``<think>`` (the ``r1_zero_base`` template), the completion starts inside
the reasoning and must *not* open it again: pass ``think_opened_in_prompt=True``.

Both rewards are string scans (``str.count`` / ``str.find``), linear in the completion length, and ignore the
prompt.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from medzero_pl.rewards.batch import BatchReward
from medzero_pl.rewards.extract import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN
from medzero_pl.rewards.mcq import clean_options, parse_choice


def strict_format(text: str, think_opened_in_prompt: bool = False) -> float:
    """1.0 for exactly ``<think>...</think> <answer>...</answer>``, else 0.0.

    Exactly one of each tag, in that order; leading whitespace allowed; only whitespace between ``</think>`` and
    ``<answer>`` and after ``</answer>`` (no text appended after the answer: the seed runs' language-mixing
    symptom); a non-blank answer (an empty ``<answer></answer>`` is not an answer). With
    ``think_opened_in_prompt`` the completion starts inside the reasoning and must contain no ``<think>``.
    """
    s = text.lstrip()
    if think_opened_in_prompt:
        if THINK_OPEN in s:
            return 0.0
    elif not s.startswith(THINK_OPEN) or s.count(THINK_OPEN) != 1:
        return 0.0
    if any(s.count(tag) != 1 for tag in (THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)):
        return 0.0
    think_end, answer_start, answer_end = s.find(THINK_CLOSE), s.find(ANSWER_OPEN), s.find(ANSWER_CLOSE)
    if not think_end < answer_start < answer_end:
        return 0.0
    between = s[think_end + len(THINK_CLOSE) : answer_start]
    answer = s[answer_start + len(ANSWER_OPEN) : answer_end]
    after = s[answer_end + len(ANSWER_CLOSE) :]
    return float(not between.strip() and not after.strip() and bool(answer.strip()))


def tag_count_format(text: str, think_opened_in_prompt: bool = False) -> float:
    """0.25 per well-placed tag, a graded version of :func:`strict_format` (after open-r1's ``tag_count_reward``,
    which only counts tags; here each tag must also be in its place):

    * ``<think>``: exactly one, at the start (with ``think_opened_in_prompt``: none);
    * ``</think>``: exactly one, after ``<think>``;
    * ``<answer>``: exactly one, after ``</think>``;
    * ``</answer>``: exactly one, after ``<answer>``, followed by whitespace only.

    "After X" is only checked when X occurs once.
    """
    s = text.lstrip()
    count = {tag: s.count(tag) for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)}
    where = {tag: s.find(tag) if n == 1 else -1 for tag, n in count.items()}

    def after(tag: str, previous: str) -> bool:
        return count[tag] == 1 and where[tag] > where[previous]

    opened = count[THINK_OPEN] == 0 if think_opened_in_prompt else count[THINK_OPEN] == 1 and where[THINK_OPEN] == 0
    closed_last = after(ANSWER_CLOSE, ANSWER_OPEN) and not s[where[ANSWER_CLOSE] + len(ANSWER_CLOSE) :].strip()
    placed = (opened, after(THINK_CLOSE, THINK_OPEN), after(ANSWER_OPEN, THINK_CLOSE), closed_last)
    return 0.25 * sum(placed)


def format_steps(text: str, options: Any = None, think_opened_in_prompt: bool = False) -> float:
    """Partial credit for each part of the strict format, each judged on its own: a shaped signal for a model
    that writes none of it yet (a small model's first completions), which :func:`tag_count_format` leaves at 0
    whenever an early tag is missing. 0.25 for each of:

    * the reasoning is closed: exactly one ``</think>``, and the opening ``<think>`` is where it belongs (at the
      start, or with ``think_opened_in_prompt`` nowhere);
    * exactly one ``<answer>...</answer>`` block whose content is an answer: for a multiple-choice row one of its
      option letters or texts, otherwise any non-blank text;
    * that block comes after ``</think>``;
    * nothing but whitespace follows ``</answer>``.

    1.0 exactly when :func:`strict_format` is 1 and the answer is a valid option, so a recipe can pay these steps
    next to ``strict_format`` and tighten towards it as the format is learnt.
    """
    s = text.lstrip()
    think_open_ok = (
        THINK_OPEN not in s if think_opened_in_prompt else s.startswith(THINK_OPEN) and s.count(THINK_OPEN) == 1
    )
    closed = think_open_ok and s.count(THINK_CLOSE) == 1
    single_block = s.count(ANSWER_OPEN) == 1 and s.count(ANSWER_CLOSE) == 1
    start, end = s.find(ANSWER_OPEN), s.find(ANSWER_CLOSE)
    block = single_block and start < end
    content = s[start + len(ANSWER_OPEN) : end] if block else ""
    opts = clean_options(options)
    answered = block and (parse_choice(content, opts) is not None if opts else bool(content.strip()))
    after_reasoning = block and s.count(THINK_CLOSE) == 1 and s.find(THINK_CLOSE) < start
    ends_with_answer = block and not s[end + len(ANSWER_CLOSE) :].strip()
    return 0.25 * sum((closed, answered, after_reasoning, ends_with_answer))


def _check(think_opened_in_prompt: bool) -> None:
    if not isinstance(think_opened_in_prompt, bool):
        raise ValueError(f"think_opened_in_prompt must be true or false, got {think_opened_in_prompt!r}")


def strict_format_reward(think_opened_in_prompt: bool = False) -> BatchReward:
    """Registry factory for :func:`strict_format`."""
    _check(think_opened_in_prompt)
    return BatchReward("strict_format", partial(strict_format, think_opened_in_prompt=think_opened_in_prompt))


def tag_count_format_reward(think_opened_in_prompt: bool = False) -> BatchReward:
    """Registry factory for :func:`tag_count_format`."""
    _check(think_opened_in_prompt)
    return BatchReward("tag_count_format", partial(tag_count_format, think_opened_in_prompt=think_opened_in_prompt))


def format_steps_reward(think_opened_in_prompt: bool = False) -> BatchReward:
    """Registry factory for :func:`format_steps` (reads the ``options`` column when the batch has one)."""
    _check(think_opened_in_prompt)
    item = partial(format_steps, think_opened_in_prompt=think_opened_in_prompt)
    return BatchReward("format_steps", item, optional=("options",))
