"""The CPU fast paths change where memory is copied, never what the model computes."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from dat.lm import fastpaths
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig


@pytest.fixture()
def plain(tiny_model_dir):
    """The tiny model as transformers loads it (SDPA attention, shared key/value heads)."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    assert model.config._attn_implementation == "sdpa" and model.config.num_key_value_heads < 4
    return model


def padded_batch(model, lengths=(9, 5, 7)):
    torch.manual_seed(0)
    width = max(lengths)
    ids = torch.randint(5, model.config.vocab_size, (len(lengths), width))
    mask = torch.tensor([[0] * (width - n) + [1] * n for n in lengths])
    return ids, mask


def test_grouped_attention_equals_transformers_with_copied_heads():
    torch.manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=3, is_causal=True)
    query, key, value = torch.randn(2, 9, 5, 16), torch.randn(2, 3, 11, 16), torch.randn(2, 3, 11, 16)
    mask = torch.ones(2, 1, 5, 11, dtype=torch.bool).tril(6)
    mask[1, :, :, :4] = False  # left padding of the second row
    ours, _ = fastpaths.grouped_sdpa(module, query, key, value, mask, scaling=0.25)
    theirs, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    assert ours.shape == theirs.shape == (2, 5, 9, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_a_masked_read_shares_key_value_heads_instead_of_copying_them(plain, tiny_model_dir):
    model = fastpaths.apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval())
    ids, mask = padded_batch(model)
    sdpa, calls = torch.nn.functional.scaled_dot_product_attention, []

    def spy(query, key, value, **kwargs):
        calls.append((query.shape[1], key.shape[1], kwargs.get("enable_gqa", False)))
        return sdpa(query, key, value, **kwargs)

    with torch.no_grad(), mock.patch.object(torch.nn.functional, "scaled_dot_product_attention", spy):
        model(input_ids=ids, attention_mask=mask)
    heads, shared = model.config.num_attention_heads, model.config.num_key_value_heads
    assert calls == [(heads, shared, True)] * model.config.num_hidden_layers


@torch.no_grad()
def test_logits_and_generation_are_unchanged(plain, tiny_model_dir):
    fast = fastpaths.apply(AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval())
    assert fast.config._attn_implementation == fastpaths.GROUPED_SDPA
    ids, mask = padded_batch(plain)
    full = plain(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(fast(input_ids=ids, attention_mask=mask).logits, full, rtol=1e-4, atol=1e-5)
    last = fast(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits  # the strided view, made contiguous
    torch.testing.assert_close(last[:, -1], full[:, -1], rtol=1e-4, atol=1e-5)
    kwargs = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": 6, "do_sample": False,
              "pad_token_id": plain.config.pad_token_id}
    assert fast.generate(**kwargs).tolist() == plain.generate(**kwargs).tolist()


def test_every_frozen_lm_takes_the_fast_paths_once(tiny_model_dir):
    lm = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))
    assert lm.model.config._attn_implementation == fastpaths.GROUPED_SDPA
    hooks = len(lm.model.get_output_embeddings()._forward_pre_hooks)
    fastpaths.apply(lm.model)
    assert len(lm.model.get_output_embeddings()._forward_pre_hooks) == hooks == 1


def test_other_attention_implementations_are_kept(tiny_model_dir):
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    assert fastpaths.apply(eager).config._attn_implementation == "eager"
