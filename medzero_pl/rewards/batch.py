"""The one place where a per-item reward meets the batch calling convention of TRL / open-r1.

Every reward in this package is a pure function ``(completion text, gold fields) -> float | None``. A trainer,
however, calls ``reward(prompts, completions, **columns) -> list[float | None]``, where

* ``completions`` are strings, or chat messages ``[{"role": "assistant", "content": ...}]`` (content may be
  ``None``, or a list of ``{"type": "text", "text": ...}`` parts),
* ``columns`` carry the gold fields of the batch as lists, one value per completion, next to many keys a reward
  does not use (TRL adds ``completion_ids``, ``trainer_state``, ``log_metric``, ...),
* ``None`` means "this reward does not apply to this row".

:class:`BatchReward` does that lifting once, so the per-item functions never see the convention and can be tested
(and reused by evaluation) on plain strings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

ItemReward = Callable[..., "float | None"]


def completion_text(completion: Any) -> str:
    """The text of one completion, whatever shape the trainer hands over; never raises.

    A string is returned as is; chat messages are joined (a tool-using rollout can hold several assistant turns);
    ``None`` content, bytes and anything unexpected become text or ``""`` rather than an error, because a reward
    that crashes on one odd sample stops a whole training run.
    """
    if isinstance(completion, str):
        return completion
    if completion is None:
        return ""
    if isinstance(completion, bytes | bytearray):
        return bytes(completion).decode("utf-8", errors="replace")
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, Sequence):
        return "".join(_content_text(m.get("content")) if isinstance(m, Mapping) else "" for m in completion)
    return ""


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        # multimodal content: a list of parts, of which only the text parts matter here
        return "".join(p["text"] for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""


class BatchReward:
    """A per-item reward lifted to ``reward(prompts, completions, **columns) -> list[float | None]``.

    Args:
        name: Reported as ``__name__`` (TRL logs rewards under it).
        item: ``item(text, **gold) -> float | None``; receives exactly the columns listed below, by keyword.
        required: Columns the reward cannot work without. Missing ones raise at call time with the reward's
            name: a misnamed column is a configuration bug that must not silently score every row as ``None``.
        optional: Columns passed when present, and as ``None`` otherwise.

    Columns not listed are ignored, so a trainer may pass as many as it likes.
    """

    def __init__(self, name: str, item: ItemReward, required: Sequence[str] = (), optional: Sequence[str] = ()) -> None:
        self.__name__ = name
        self.item = item
        self.required = tuple(required)
        self.optional = tuple(optional)

    def __repr__(self) -> str:
        return f"BatchReward({self.__name__!r}, required={self.required}, optional={self.optional})"

    def __call__(self, prompts: Any = None, completions: Sequence[Any] | None = None, **columns: Any) -> list:
        if completions is None:
            raise ValueError(f"reward '{self.__name__}' needs completions")
        n = len(completions)
        missing = [c for c in self.required if c not in columns]
        if missing:
            raise ValueError(f"reward '{self.__name__}' needs column(s) {missing}; the batch has {sorted(columns)}")
        used = {c: self._column(columns[c], c, n) for c in (*self.required, *self.optional) if c in columns}
        absent = [c for c in self.optional if c not in columns]
        out = []
        for i, completion in enumerate(completions):
            gold = {c: values[i] for c, values in used.items()}
            gold.update(dict.fromkeys(absent))
            out.append(self.item(completion_text(completion), **gold))
        return out

    def _column(self, values: Any, column: str, n: int) -> Sequence[Any]:
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) != n:
            got = f"{len(values)} values" if isinstance(values, Sequence) else type(values).__name__
            raise ValueError(
                f"reward '{self.__name__}': column '{column}' must hold one value per completion ({n}), got {got}"
            )
        return values
