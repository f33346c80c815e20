"""FrozenLM: batching never changes a result, prefixes go where they should, bad input is explained."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dat.lm.frozen import ContextOverflowError, FrozenLM, SamplingConfig
from dat.lm.kvcache import Cached
from dat.lm.loading import ModelConfig, ModelLoadError
from dat.lm.nucleus import NucleusSampler

GREEDY = SamplingConfig(do_sample=False, max_new_tokens=10, repetition_penalty=1.0)
DIALOGUES = [
    [{"role": "system", "content": "You sell a bike."}, {"role": "user", "content": "Would you take $80?"}],
    [{"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "You are a buyer with a long story to tell about the bike."},
        {"role": "user", "content": "Deal! I'm selling."},
        {"role": "assistant", "content": "No thanks"},
        {"role": "user", "content": "Goodbye"},
    ],
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))


def prefixes(lm: FrozenLM, seed: int = 0) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, lm.hidden_size, generator=g) * 3, None, torch.randn(2, lm.hidden_size, generator=g) * 3]


def test_frozen_and_eval(lm):
    assert not lm.model.training
    assert all(not p.requires_grad for p in lm.model.parameters())


def test_render_uses_chat_template(lm):
    text = lm.render(DIALOGUES[0])
    assert text.startswith("<|im_start|>system\nYou sell a bike.<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\n")


def test_states_batched_equal_alone(lm):
    batched = lm.states(DIALOGUES)
    assert batched.shape == (3, lm.hidden_size) and batched.dtype == torch.float32
    for i, dialogue in enumerate(DIALOGUES):
        assert torch.allclose(lm.states([dialogue])[0], batched[i], atol=1e-5)
    middle = lm.states(DIALOGUES, layer=1)
    assert not torch.allclose(middle, batched)


@torch.no_grad()
def test_states_are_the_models_hidden_states_of_the_last_token(lm):
    """From the decoder alone (no LM head, only the wanted layer kept), cached or not: the values a full pass
    with every hidden state gives."""
    for layer in (-1, 1):
        for caches in (None, [Cached() for _ in DIALOGUES]):
            states = lm.states(DIALOGUES, layer=layer, caches=caches)
            for i, dialogue in enumerate(DIALOGUES):
                ids = torch.tensor([lm.encode(dialogue)])
                hidden = lm.model(ids, output_hidden_states=True).hidden_states[layer][0, -1]
                assert torch.allclose(states[i], hidden.float(), atol=1e-5)


def test_mean_pooled_states_average_every_token_of_the_chat_and_ignore_padding(lm):
    pooled = lm.states(DIALOGUES, layer=1, pool="mean")
    for i, dialogue in enumerate(DIALOGUES):  # alone, without padding: the plain mean over positions
        ids = torch.tensor([lm.encode(dialogue)])
        hidden = lm.model(ids, output_hidden_states=True).hidden_states[1][0]
        assert torch.allclose(pooled[i], hidden.mean(0).float(), atol=1e-5)
    assert not torch.allclose(pooled, lm.states(DIALOGUES, layer=1))
    with pytest.raises(ValueError, match="pool='median'|pool=.median."):
        lm.states(DIALOGUES, pool="median")


def test_generate_batched_equal_alone_with_and_without_prefix(lm):
    plain = lm.generate(DIALOGUES, sampling=GREEDY)
    assert plain == [lm.generate([d], sampling=GREEDY)[0] for d in DIALOGUES]
    steered = lm.generate(DIALOGUES, prefixes(lm), sampling=GREEDY)
    alone = [lm.generate([d], [p], sampling=GREEDY)[0] for d, p in zip(DIALOGUES, prefixes(lm), strict=False)]
    assert steered == alone
    assert steered[1] == plain[1]  # the sample without a prefix is untouched by its neighbours'
    assert steered[0] != plain[0] and steered[2] != plain[2]


def test_zero_length_prefix_equals_plain_generate_on_ids(lm):
    ids = lm.tokenizer([lm.render(DIALOGUES[0])], add_special_tokens=False, return_tensors="pt")
    out = lm.model.generate(**ids, generation_config=lm._generation_config(GREEDY))
    expected = lm._decode(out[0, ids["input_ids"].shape[1]:].tolist())
    empty = torch.zeros(0, lm.hidden_size)
    assert lm.generate([DIALOGUES[0]], [empty], sampling=GREEDY) == [expected]


@pytest.mark.parametrize("position", ["start", "before_reply"])
def test_prefix_position_and_mask(lm, position):
    prefix = [torch.full((2, lm.hidden_size), 7.0), None]
    ids = [lm.encode(DIALOGUES[0]), lm.encode(DIALOGUES[2])]
    batch = lm._splice(ids, prefix, position)
    width = batch.embeds.shape[1]
    n_pad = width - (len(ids[0]) + 2)
    assert batch.attention_mask[0, :n_pad].sum() == 0 and batch.attention_mask[0, n_pad:].all()
    at = batch.prefix_index[0]
    header = len(lm._header_ids)
    assert at == (1 if position == "start" else len(ids[0]) - header)
    assert torch.all(batch.embeds[0, n_pad + at : n_pad + at + 2] == 7.0)
    assert batch.position_ids[0, n_pad].item() == 0 and batch.position_ids[0, -1].item() == len(ids[0]) + 1
    assert batch.attention_mask[1].all()  # the longest sample has no padding


def test_sampling_is_seeded_and_explicit(lm):
    sample = SamplingConfig(max_new_tokens=8, temperature=1.0, seed=3)
    assert lm.generate(DIALOGUES, sampling=sample) == lm.generate(DIALOGUES, sampling=sample)
    assert lm.generate(DIALOGUES, sampling=sample) != lm.generate(DIALOGUES, sampling=replace(sample, seed=4))
    config = lm._generation_config(sample)  # greedy over the scores of the draw, no warper of transformers'
    assert not config.do_sample and config.top_k is None and config.max_new_tokens == 8
    sampler = lm._processors(sample)[-1]
    assert isinstance(sampler, NucleusSampler) and (sampler.temperature, sampler.top_p) == (1.0, sample.top_p)
    assert not any(isinstance(p, NucleusSampler) for p in lm._processors(GREEDY))


def test_decoding_keeps_real_characters(lm):
    end = lm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    tokens = lm.tokenizer("Deal! I'm selling", add_special_tokens=False)["input_ids"] + [end, end]
    assert lm._decode(tokens) == "Deal! I'm selling"


def test_reply_logprobs_differentiable_in_prefix(lm):
    prefix = torch.zeros(2, lm.hidden_size, requires_grad=True)
    total, count = lm.reply_logprobs([DIALOGUES[0]], ["Deal!"], [prefix])
    total.sum().backward()
    assert count.item() == len(lm.tokenizer("Deal!", add_special_tokens=False)["input_ids"]) + 1
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    alone, _ = lm.reply_logprobs([DIALOGUES[2]], ["No"])
    batched, _ = lm.reply_logprobs(DIALOGUES, ["a", "b", "No"])
    assert torch.allclose(alone[0], batched[2], atol=1e-4)


def test_bad_prefix_shape_is_explained(lm):
    with pytest.raises(ValueError, match=r"expected \(L, 64\)"):
        lm.generate([DIALOGUES[0]], [torch.zeros(2, 5)], sampling=GREEDY)


def test_context_overflow_is_explained(lm):
    long = [{"role": "user", "content": "deal " * 3000}]
    with pytest.raises(ContextOverflowError, match="exceeds the context"):
        lm.generate([long], sampling=GREEDY)
    assert not lm.fits(long)


def test_unknown_model_and_missing_adapter(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="Unknown model 'no-such/model-xyz'"):
        FrozenLM.load(ModelConfig(name="no-such/model-xyz"))
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        FrozenLM.load(ModelConfig(name=str(tiny_model_dir), adapter=str(tmp_path / "missing")))
    with pytest.raises(ModelLoadError, match="dtype"):
        FrozenLM.load(ModelConfig(name=str(tiny_model_dir), dtype="float8"))


def test_peft_adapter_is_applied_and_frozen(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(tmp_path / "adapter")
    plain = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))
    adapted = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), adapter=str(tmp_path / "adapter")))
    assert all(not p.requires_grad for p in adapted.model.parameters())
    assert not torch.allclose(plain.states(DIALOGUES[:1]), adapted.states(DIALOGUES[:1]))


@pytest.mark.slow
def test_default_model_from_wheel_generates_a_steered_reply(tmp_path_factory):
    from dat.action.projection import PrefixConfig, build_projection
    from dat.lm.loading import cache_root

    lm = FrozenLM.load(ModelConfig())  # the user cache: converted on first use, reused afterwards
    assert lm.hidden_size == 576 and (cache_root() / "models" / "smollm2-135m-instruct" / "config.json").is_file()
    projection = build_projection(lm.model.get_input_embeddings().weight, PrefixConfig(norm=8.0))
    prefix = projection(torch.ones(1, 64) / 8.0)[0]
    chat = [{"role": "system", "content": "You are a buyer."}, {"role": "user", "content": "I'm asking $180."}]
    steered = lm.generate([chat], [prefix], SamplingConfig(do_sample=False, max_new_tokens=16))
    assert len(steered[0].split()) >= 3


def test_repetition_penalty_batched_equals_alone(lm):
    penalised = SamplingConfig(do_sample=False, max_new_tokens=12, repetition_penalty=1.5)
    batched = lm.generate(DIALOGUES, prefixes(lm), sampling=penalised)
    alone = [lm.generate([d], [p], sampling=penalised)[0] for d, p in zip(DIALOGUES, prefixes(lm), strict=False)]
    assert batched == alone
    plain = SamplingConfig(do_sample=False, max_new_tokens=12, repetition_penalty=1.0)
    assert batched != lm.generate(DIALOGUES, prefixes(lm), sampling=plain)  # the penalty does act
