from __future__ import annotations

import pytest
import torch

from medzero_pl.rollout import HFRolloutEngine, SamplingParams
from tests.tiny import EOS, PAD, tiny_llama, tiny_tokenizer

GREEDY = SamplingParams(max_new_tokens=8, temperature=0.0)
PROMPTS = [[5, 6, 7], [8], [9, 10, 11, 12, 13, 14], [20, 21]]


@pytest.fixture(scope="module")
def engine():
    return HFRolloutEngine(tiny_llama(), tiny_tokenizer())


def test_shapes_prompt_major_order_and_left_padding(engine):
    alone = [engine.generate([p], 1, GREEDY).completion_ids[0] for p in PROMPTS]  # unpadded references
    assert len(set(map(tuple, alone))) > 1  # the prompts lead to different completions, so order is observable

    out = engine.generate(PROMPTS, 2, GREEDY)

    assert len(out) == len(out.texts) == len(out.finish_reasons) == 2 * len(PROMPTS)
    assert out.logprobs is None
    assert out.completion_ids == [ids for ids in alone for _ in range(2)]  # i * n + j is sample j of prompt i


def test_chunking_does_not_change_greedy_output(engine):
    whole = engine.generate(PROMPTS, 2, GREEDY)
    chunked = HFRolloutEngine(engine.model, engine.tokenizer, batch_size=3).generate(PROMPTS, 2, GREEDY)
    assert chunked.completion_ids == whole.completion_ids


def test_always_eos_stops_after_one_token():
    engine = HFRolloutEngine(tiny_llama(eos_logit=50.0), tiny_tokenizer())
    out = engine.generate(PROMPTS, 3, SamplingParams(max_new_tokens=5, seed=0))
    assert out.completion_ids == [[EOS]] * 12
    assert out.finish_reasons == ["stop"] * 12
    assert out.texts == [""] * 12


def test_eos_truncation_and_finish_reasons():
    engine = HFRolloutEngine(tiny_llama(eos_logit=2.75), tiny_tokenizer())  # P(EOS) ~ 0.25 per token
    sampling = SamplingParams(max_new_tokens=6, seed=0)

    out = engine.generate(PROMPTS, 4, sampling)

    assert set(out.finish_reasons) == {"stop", "length"}
    assert any(len(ids) < 6 for ids in out.completion_ids)  # rows that stopped early sat next to padded ones
    for ids, reason, text in zip(out.completion_ids, out.finish_reasons, out.texts, strict=True):
        assert PAD not in ids
        assert EOS not in ids[:-1]
        if reason == "stop":
            assert ids[-1] == EOS
        else:
            assert len(ids) == 6 and EOS not in ids
        assert text == engine.tokenizer.decode(ids, skip_special_tokens=True)


def test_seed_reproducible_and_caller_rng_untouched():
    model, tokenizer = tiny_llama(), tiny_tokenizer()
    sampling = SamplingParams(max_new_tokens=8, temperature=1.0, top_k=20, top_p=0.9, seed=7)
    torch.manual_seed(123)
    state = torch.get_rng_state()

    engine = HFRolloutEngine(model, tokenizer)
    a1, a2 = engine.generate(PROMPTS, 3, sampling), engine.generate(PROMPTS, 3, sampling)
    b1 = HFRolloutEngine(model, tokenizer).generate(PROMPTS, 3, sampling)
    other = engine.generate(PROMPTS, 3, SamplingParams(max_new_tokens=8, top_k=20, top_p=0.9, seed=8))

    assert torch.equal(torch.get_rng_state(), state)
    assert a1.completion_ids == a2.completion_ids == b1.completion_ids  # the seed alone decides the samples
    assert a1.completion_ids != other.completion_ids
    assert len(set(map(tuple, a1.completion_ids[:3]))) > 1  # samples of one prompt differ


def test_unseeded_sampling_uses_global_rng():
    engine = HFRolloutEngine(tiny_llama(), tiny_tokenizer())
    sampling = SamplingParams(max_new_tokens=8)
    torch.manual_seed(1)
    a = engine.generate(PROMPTS, 2, sampling)
    torch.manual_seed(1)
    b = engine.generate(PROMPTS, 2, sampling)
    assert a.completion_ids == b.completion_ids


def test_eval_mode_no_grad_during_generation_and_mode_restored():
    model = tiny_llama()
    model.train()
    model.model.layers[0].eval()  # a submodule deliberately in eval mode stays so
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append((module.training, torch.is_grad_enabled())))

    HFRolloutEngine(model, tiny_tokenizer()).generate(PROMPTS[:2], 1, GREEDY)

    assert seen and all(state == (False, False) for state in seen)
    assert model.training and model.model.training and not model.model.layers[0].training


def test_empty_and_invalid_inputs(engine):
    assert len(engine.generate([], 4, GREEDY)) == 0
    with pytest.raises(ValueError, match="n must be"):
        engine.generate(PROMPTS, 0, GREEDY)
    with pytest.raises(ValueError, match="at least one token"):
        engine.generate([[5], []], 1, GREEDY)
    with pytest.raises(ValueError, match="batch_size"):
        HFRolloutEngine(engine.model, engine.tokenizer, batch_size=0)


@pytest.mark.parametrize("batch_size", [None, 3], ids=["one-call", "chunks-cutting-groups"])
def test_shared_prefill_samples_what_the_plain_prefill_samples(batch_size):
    model = tiny_llama()
    for p in model.parameters():  # peaked distributions, so a wrong context would change the samples
        torch.nn.init.normal_(p, std=0.5)
    plain = HFRolloutEngine(model, tiny_tokenizer(), batch_size=batch_size, shared_prefill=False)
    shared = HFRolloutEngine(model, tiny_tokenizer(), batch_size=batch_size, shared_prefill=True)
    for sampling in (GREEDY, SamplingParams(max_new_tokens=8, seed=3)):
        assert (
            shared.generate(PROMPTS, 3, sampling).completion_ids == plain.generate(PROMPTS, 3, sampling).completion_ids
        )


def test_shared_prefill_runs_each_prompt_once():
    model = tiny_llama()
    engine = HFRolloutEngine(model, tiny_tokenizer(), shared_prefill=True)
    rows_seen: list[int] = []
    handle = model.model.embed_tokens.register_forward_hook(lambda m, i, o: rows_seen.append(o.shape[:2]))
    engine.generate(PROMPTS, 4, SamplingParams(max_new_tokens=2, seed=0))
    handle.remove()
    width = max(map(len, PROMPTS))
    assert rows_seen[0] == (len(PROMPTS), width - 1)  # the distinct prompts, once, all but their last token
    assert rows_seen[1] == (4 * len(PROMPTS), 1)  # then every row from the shared cache: the last prompt token
