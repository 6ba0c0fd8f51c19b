"""The one record every reader produces: a multiple-choice question or a diagnosis case."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from medzero_pl.errors import UserError

MCQ = "mcq"
DIAGNOSIS = "diagnosis"


class DataFormatError(UserError):
    """Bad input data: the message names the file, the line or record, the field and what was expected."""

    def __init__(self, path: Any, where: str | int | None, field_name: str | None, expected: str) -> None:
        location = str(path)
        if where is not None:
            location += f", line {where}" if isinstance(where, int) else f", {where}"
        what = f"field '{field_name}': " if field_name else ""
        super().__init__(f"{location}: {what}{expected}")
        self.path, self.where, self.field_name = path, where, field_name


@dataclass(frozen=True)
class Example:
    """One training or evaluation item, independent of the format it was read from.

    A multiple-choice question has ordered ``options`` (letter -> text) and a gold ``answer`` letter.
    A diagnosis case has no options and one or more equivalent gold ``diagnoses`` names.
    """

    id: str
    source: str
    question: str
    options: dict[str, str] = field(default_factory=dict)
    answer: str | None = None
    diagnoses: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.options:
            if self.answer not in self.options:
                raise ValueError(f"{self.id}: answer {self.answer!r} is not among options {list(self.options)}")
        elif not self.diagnoses:
            raise ValueError(f"{self.id}: an example needs options and an answer, or gold diagnoses")

    @property
    def task(self) -> str:
        return MCQ if self.options else DIAGNOSIS

    @property
    def answer_text(self) -> str | None:
        return self.options.get(self.answer) if self.answer else None

    def columns(self) -> dict[str, Any]:
        """The gold fields handed to reward functions as keyword columns (TRL convention)."""
        return {
            "id": self.id,
            "source": self.source,
            "task": self.task,
            "answer": self.answer,
            "options": dict(self.options),
            "diagnoses": list(self.diagnoses),
        }
