"""Prompt templates: how an :class:`Example` becomes the text a policy model continues.

The named templates are YAML files in ``conf/prompt/`` whose keys are exactly the fields of
:class:`PromptTemplate` (the config system merges them into ``OmegaConf.structured(PromptTemplate)``);
this module holds no template text beyond the field defaults. The defaults reproduce the MedXpertQA
question layout ``"{question}\\nAnswer Choices: (A) ... (B) ..."``, which is also what the seed project
(open-medical-r1 ``scripts/data_prepare.py``) built for MedQA, minus its trailing space.

Rendering a chat model's prompt goes through ``tokenizer.apply_chat_template(..., add_generation_prompt=True)``
so the model sees its own turn markers; base models (no chat template) get plain text.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from medzero_pl.data.records import Example

USER_FIELDS = {"question", "choices"}
CHOICE_FIELDS = {"letter", "text"}


@dataclass
class PromptTemplate:
    """A prompt layout.

    ``user`` and ``choice_format`` are ``str.format`` strings (write ``{{`` for a literal brace there); the
    other text fields are used verbatim.
    """

    user: str = "{question}{choices}"
    """The user turn. ``{question}`` is the example's question; ``{choices}`` its rendered options ("" for a
    diagnosis case). A template without ``{choices}`` refuses multiple-choice examples rather than hide options."""
    system: str | None = None
    """The system turn (chat models), or the text put before ``user`` with a blank line (plain text). None: none."""
    choice_format: str = "({letter}) {text}"
    """How one option is written, with ``{letter}`` and ``{text}``."""
    choice_separator: str = " "
    """What goes between two rendered options (MedXpertQA puts them on one line separated by spaces)."""
    choices_prefix: str = "\nAnswer Choices: "
    """What goes before the first option; together with the question this is MedXpertQA's inline layout."""
    completion_prefix: str = ""
    """Text appended after the rendered prompt (after the assistant turn marker for chat models), e.g.
    ``"<think>"`` so that a base model starts inside its reasoning block, as R1-Zero base-model recipes do."""
    use_chat_template: bool = True
    """Render through the tokenizer's chat template when it has one; False always renders plain text."""

    def __post_init__(self) -> None:
        problems = []
        user_fields = _placeholders(self.user)
        if "question" not in user_fields:
            problems.append("'user' must contain the {question} placeholder")
        if user_fields - USER_FIELDS:
            problems.append(f"'user' may only use {sorted(USER_FIELDS)}, got {sorted(user_fields - USER_FIELDS)}")
        choice_fields = _placeholders(self.choice_format)
        if choice_fields - CHOICE_FIELDS:
            problems.append(
                f"'choice_format' may only use {sorted(CHOICE_FIELDS)}, got {sorted(choice_fields - CHOICE_FIELDS)}"
            )
        if problems:
            raise ValueError("invalid prompt template: " + "; ".join(problems))


def _placeholders(text: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as error:  # an unmatched brace
        raise ValueError(f"invalid prompt template text {text[:60]!r}...: {error}") from None


def template_from_dict(values: Mapping[str, Any]) -> PromptTemplate:
    """Build a template from a mapping (e.g. a parsed ``conf/prompt/*.yaml``), refusing unknown keys."""
    known = {f.name for f in fields(PromptTemplate)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown prompt template key(s) {unknown}; PromptTemplate fields are {sorted(known)}")
    return PromptTemplate(**dict(values))


def render_choices(options: Mapping[str, str], template: PromptTemplate) -> str:
    """The options block: ``choices_prefix`` then each option in ``choice_format``; "" when there are none."""
    if not options:
        return ""
    rendered = [template.choice_format.format(letter=letter, text=text) for letter, text in options.items()]
    return template.choices_prefix + template.choice_separator.join(rendered)


def render_user(example: Example, template: PromptTemplate) -> str:
    """The user turn's text for one example."""
    if example.options and "choices" not in _placeholders(template.user):
        raise ValueError(
            f"{example.id}: a multiple-choice example needs a template whose 'user' has a {{choices}} placeholder"
        )
    return template.user.format(question=example.question, choices=render_choices(example.options, template))


def render_messages(example: Example, template: PromptTemplate) -> list[dict[str, str]]:
    """The conversation (system turn if any, then the user turn) in the ``[{role, content}]`` form."""
    messages = [{"role": "system", "content": template.system}] if template.system else []
    return [*messages, {"role": "user", "content": render_user(example, template)}]


def render_prompt(example: Example, template: PromptTemplate, tokenizer: Any = None) -> str:
    """The full prompt text the policy continues.

    Args:
        example: The item to ask.
        template: The layout.
        tokenizer: A Hugging Face tokenizer. Its chat template is used when it has one and
            ``template.use_chat_template`` is set (with the generation prompt added, so the text ends where
            the assistant's answer begins); otherwise, or with no tokenizer, the prompt is plain text:
            ``system + "\\n\\n" + user`` (or ``user`` alone).

    Returns:
        The prompt followed by ``template.completion_prefix``.
    """
    if template.use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            render_messages(example, template), add_generation_prompt=True, tokenize=False
        )
    else:
        user = render_user(example, template)
        text = f"{template.system}\n\n{user}" if template.system else user
    return text + template.completion_prefix
