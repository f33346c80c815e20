"""PromptCache gives FrozenLM's numbers for the before_reply position, at a fraction of the cost."""

from __future__ import annotations

import pytest
import torch

from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.loading import ModelConfig
from dat.lm.promptcache import PromptCache

DIALOGUES = [
    [
        {"role": "system", "content": "You sell a bike for $180."},
        {"role": "user", "content": "Would you take $80?"},
    ],
    [{"role": "user", "content": "Could you help me finish the report before Friday?"}],
    [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "The heater is broken."},
        {"role": "assistant", "content": "I can offer $90."},
        {"role": "user", "content": "Deal!"},
    ],
]


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))


@pytest.fixture(scope="module")
def cache(lm) -> PromptCache:
    return PromptCache(lm, DIALOGUES, batch_size=2)


def test_reply_logprobs_match_frozen_lm_and_carry_gradients(lm, cache):
    index = [0, 1, 2, 0]
    replies = ["Deal!", "No, I don't agree.", "Sure, happy to help.", "I can offer $90 for it."]
    torch.manual_seed(0)
    prefix = (torch.randn(4, 2, lm.hidden_size) * 0.5).requires_grad_(True)
    ours, n = cache.reply_logprobs(index, replies, list(prefix))
    ref, n_ref = lm.reply_logprobs(
        [DIALOGUES[i] for i in index], replies, list(prefix.detach()), position="before_reply"
    )
    assert torch.equal(n, n_ref)
    assert torch.allclose(ours.detach(), ref, atol=1e-4)
    ours.sum().backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    plain, _ = cache.reply_logprobs(index, replies)
    plain_ref, _ = lm.reply_logprobs([DIALOGUES[i] for i in index], replies)
    assert torch.allclose(plain.detach(), plain_ref.detach(), atol=1e-4)


def test_next_token_and_greedy_generation_match(lm, cache):
    torch.manual_seed(1)
    prefix = list(torch.randn(3, 2, lm.hidden_size))
    dialogues = [DIALOGUES[i] for i in (2, 0, 1)]
    ours = cache.next_token_logprobs([2, 0, 1], prefix)
    ref = lm.next_token_logprobs(dialogues, prefix, position="before_reply")
    assert torch.allclose(ours, ref, atol=1e-4)
    greedy = SamplingConfig(max_new_tokens=8, do_sample=False)
    assert cache.generate([2, 0, 1], prefix, greedy) == lm.generate(dialogues, prefix, greedy, "before_reply")
    assert cache.generate([1, 1], None, greedy) == lm.generate([DIALOGUES[1]] * 2, None, greedy)
    # The repetition penalty is applied as FrozenLM applies it (strong here, so it changes the text).
    strong = SamplingConfig(max_new_tokens=16, do_sample=False, repetition_penalty=5.0)
    penalised = cache.generate([0, 1, 2], None, strong)
    assert penalised == lm.generate(DIALOGUES, None, strong)
    assert penalised != cache.generate(
        [0, 1, 2], None, SamplingConfig(max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
    )


def test_sampling_is_seeded_and_states_read_the_reply(lm, cache):
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0)
    first = cache.generate([0, 0, 1], None, sampling, seed=5)
    assert first == cache.generate([0, 0, 1], None, sampling, seed=5)
    assert first == lm.generate([DIALOGUES[i] for i in (0, 0, 1)], None, sampling, "before_reply", seed=5)
    states = cache.states([0, 0], ["Deal!", "No, I am leaving."])
    assert states.shape == (2, lm.hidden_size) and not torch.allclose(states[0], states[1])
    rendered = [list(DIALOGUES[0]) + [{"role": "assistant", "content": "Deal!"}]]
    ids = lm.tokenizer(lm.render(rendered[0], add_generation_prompt=False), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = lm.model(
            input_ids=torch.tensor([ids[: ids.index(lm.tokenizer.eos_token_id, len(cache.heads[0])) + 1]]),
            output_hidden_states=True,
        )
    assert torch.allclose(states[0], out.hidden_states[-1][0, -1], atol=1e-4)
    assert torch.allclose(cache.states([2, 1]), lm.states([DIALOGUES[2], DIALOGUES[1]]), atol=1e-4)
    pooled = cache.states([0], ["Deal!"], layer=1, pool="mean")
    n = len(cache.targets(["Deal!"])[0])
    assert torch.allclose(pooled[0], out.hidden_states[1][0, -n:].mean(0), atol=1e-4)
