"""Per-layer (deep) prefixes: the input path when the layer rows are zero, the same numbers through every cache."""

from __future__ import annotations

import pytest
import torch

from dat.action.projection import PrefixConfig, UpProjection
from dat.lm import layerprefix
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.kvcache import Cached
from dat.lm.loading import ModelConfig
from dat.lm.promptcache import PromptCache
from tests.test_promptcache import DIALOGUES

REPLIES = ["Deal!", "No, I don't agree.", "Sure, happy to help."]
GREEDY = SamplingConfig(max_new_tokens=6, do_sample=False, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))


def deep(lm: FrozenLM, seed: int, layer_scale: float = 1.0, n: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    return list(torch.randn(n, lm.layers, 2, lm.hidden_size) * torch.tensor([1.0, layer_scale])[:, None, None])


@pytest.mark.parametrize("position", ["start", "before_reply"])
def test_a_deep_prefix_with_zero_layer_rows_is_the_input_prefix(lm, position):
    prefixes = deep(lm, 0, layer_scale=0.0)
    inputs = [p[0] for p in prefixes]
    mixed = [prefixes[0], None, prefixes[2]]  # rows without a prefix in the same batch
    a, _ = lm.reply_logprobs(DIALOGUES, REPLIES, mixed, position=position)
    b, _ = lm.reply_logprobs(DIALOGUES, REPLIES, [inputs[0], None, inputs[2]], position=position)
    assert torch.allclose(a, b, atol=1e-5)
    assert lm.generate(DIALOGUES, prefixes, GREEDY, position=position) == lm.generate(
        DIALOGUES, inputs, GREEDY, position=position)
    assert torch.allclose(lm.next_token_logprobs(DIALOGUES, prefixes, position),
                          lm.next_token_logprobs(DIALOGUES, inputs, position), atol=1e-5)


def test_layer_rows_change_the_reply_and_carry_gradients(lm):
    prefixes = [p.requires_grad_(True) for p in deep(lm, 1, layer_scale=3.0)]
    steered, _ = lm.reply_logprobs(DIALOGUES, REPLIES, prefixes, position="before_reply")
    flat, _ = lm.reply_logprobs(DIALOGUES, REPLIES, [p[0].detach() for p in prefixes], position="before_reply")
    assert (steered.detach() - flat).abs().max() > 1e-2
    steered.sum().backward()
    assert all(p.grad[1].abs().sum() > 0 for p in prefixes)  # the layer row is trained, not only the input


def test_deep_prefixes_give_the_same_numbers_through_the_prompt_cache_and_the_kv_cache(lm):
    prefixes = deep(lm, 2, layer_scale=2.0)
    cache = PromptCache(lm, DIALOGUES, batch_size=2)
    cached, _ = cache.reply_logprobs([0, 1, 2], REPLIES, prefixes)
    plain, _ = lm.reply_logprobs(DIALOGUES, REPLIES, prefixes, position="before_reply")
    assert torch.allclose(cached, plain, atol=1e-4)
    assert torch.allclose(cache.next_token_logprobs([0, 1, 2], prefixes),
                          lm.next_token_logprobs(DIALOGUES, prefixes, "before_reply"), atol=1e-4)
    uncached = lm.generate(DIALOGUES, prefixes, GREEDY, position="before_reply")
    assert cache.generate([0, 1, 2], prefixes, GREEDY) == uncached
    caches = [Cached() for _ in DIALOGUES]
    assert lm.generate(DIALOGUES, prefixes, GREEDY, position="before_reply", caches=caches) == uncached
    # The hooks are gone after each call: an unsteered call is unchanged.
    assert lm.generate(DIALOGUES, None, GREEDY) == lm.generate(DIALOGUES, [None] * 3, GREEDY)
    assert not any(layer._forward_pre_hooks for layer in layerprefix.decoder_layers(lm.model))


def test_deep_prefixes_for_another_model_are_refused(lm):
    wrong = torch.zeros(lm.layers + 1, 2, lm.hidden_size)
    with pytest.raises(ValueError, match=r"per layer, \(2, L, 64\)"):
        lm.generate(DIALOGUES[:1], [wrong], GREEDY)


def test_a_deep_behaviour_projection_mixes_whole_layer_stacks():
    cfg = PrefixConfig(kind="behaviours", action_dim=2, tokens=2, sharpness=30.0, depth="layers")
    basis = torch.randn(2, 3, 2, 8)
    projection = UpProjection(cfg, 8, 1.0, basis)
    out = projection(torch.tensor([[1.0, -1.0]]))
    assert out.shape == (1, 3, 2, 8) and torch.allclose(out[0], basis[0], atol=1e-5)
    with pytest.raises(ValueError, match="depth=layers needs prefix.kind=behaviours"):
        UpProjection(PrefixConfig(kind="pca", action_dim=4, depth="layers"), 8, 1.0, torch.randn(4, 8))
    with pytest.raises(ValueError, match="prefix.depth=layers needs a"):
        UpProjection(cfg, 8, 1.0, torch.randn(2, 2, 8))  # an input basis under depth=layers


def test_deep_and_unsteered_rows_share_a_cached_generation(lm):
    prefixes = deep(lm, 4, layer_scale=2.0)
    mixed = [prefixes[0], None, prefixes[2]]  # suffixes of different lengths, left-padded together
    cache = PromptCache(lm, DIALOGUES, batch_size=2)
    uncached = lm.generate(DIALOGUES, mixed, GREEDY, position="before_reply")
    assert cache.generate([0, 1, 2], mixed, GREEDY) == uncached
    assert lm.generate(DIALOGUES, mixed, GREEDY, position="before_reply", caches=[Cached() for _ in DIALOGUES]) \
        == uncached
    assert uncached[0] == lm.generate(DIALOGUES[:1], prefixes[:1], GREEDY, position="before_reply")[0]
