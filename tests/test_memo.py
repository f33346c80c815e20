"""The memo: a chat's state or greedy unprefixed reply is computed once, and what it returns is what a read gives."""

from __future__ import annotations

import pytest
import torch

from dat.action.projection import PrefixConfig, UpProjection
from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.kvcache import Cached
from dat.lm.loading import ModelConfig
from dat.lm.memo import Memo
from tests.dialogue_tasks import GREEDY, NEVER, make_tasks

CHATS = [
    [{"role": "system", "content": "You sell a bike for $180."}, {"role": "user", "content": "Would you take $80?"}],
    [{"role": "system", "content": "Be kind and brief."}, {"role": "user", "content": "The heater is broken."}],
]


def load(folder, entries: int) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(folder), memo_entries=entries))


@pytest.fixture()
def reads():
    return []


def counting(lm: FrozenLM, reads: list) -> FrozenLM:
    lm.model.model.register_forward_pre_hook(lambda *_: reads.append(1))
    return lm


def test_the_memo_keeps_the_most_recent_entries_and_zero_keeps_none():
    memo = Memo(2)
    for k in range(3):
        memo.put("kind", [k], k)
    assert len(memo) == 2 and memo.get("kind", [0]) is None and memo.get("kind", [2]) == 2
    assert memo.get("other", [2]) is None  # the kind (call and settings) is part of the key
    off = Memo(0)
    off.put("kind", [1], 1)
    assert len(off) == 0 and off.get("kind", [1]) is None
    with pytest.raises(ValueError, match="model.memo_entries"):
        Memo(-1)


def test_a_state_read_again_comes_from_the_memo_and_equals_a_read(tiny_model_dir, reads):
    lm, plain = counting(load(tiny_model_dir, 64), reads), load(tiny_model_dir, 0)
    for pool in ("last", "mean"):
        first = lm.states(CHATS, layer=1, pool=pool, caches=[Cached() for _ in CHATS])  # stores its blocks
        reads.clear()
        cache = Cached()
        again = lm.states(CHATS[:1], layer=1, pool=pool, caches=[cache])
        assert reads == [] and torch.equal(again[0], first[0])  # nothing read
        assert torch.allclose(first, plain.states(CHATS, layer=1, pool=pool), atol=1e-5)
        ids = lm.encode(CHATS[0])
        assert len(cache) and cache.ids == ids[:len(cache)]  # the store's blocks of the chat, as a read leaves them
        longer = CHATS[0] + [{"role": "assistant", "content": "No."}, {"role": "user", "content": "$100?"}]
        later = lm.states([longer], layer=1, pool=pool, caches=[cache])  # reads only what the cache lacks
        assert sum(reads) == 1 and torch.allclose(later, plain.states([longer], layer=1, pool=pool), atol=1e-5)
        reads.clear()
    reads.clear()
    lm.states(CHATS[:1], layer=0, pool="mean")  # another layer is another result
    assert reads == [1]


def test_a_greedy_reply_without_a_prefix_is_decoded_once(tiny_model_dir, reads):
    lm = counting(load(tiny_model_dir, 64), reads)
    first = lm.generate(CHATS, sampling=GREEDY)
    reads.clear()
    assert lm.generate(CHATS[::-1], sampling=GREEDY) == first[::-1] and reads == []
    assert first == load(tiny_model_dir, 0).generate(CHATS, sampling=GREEDY)
    longer = SamplingConfig(do_sample=False, max_new_tokens=GREEDY.max_new_tokens + 1, repetition_penalty=1.0)
    lm.generate(CHATS[:1], sampling=longer)  # other settings decode again
    assert reads
    reads.clear()
    prefix = torch.zeros(2, lm.hidden_size)
    lm.generate(CHATS[:1], [prefix], sampling=GREEDY)  # a steered reply is never taken from the memo
    lm.generate(CHATS[:1], sampling=SamplingConfig(do_sample=True, max_new_tokens=4))  # nor a sampled one
    assert len(reads) >= 2 and lm.memo.hits == 2


def test_lockstep_dialogues_played_again_equal_those_played_without_a_memo(tiny_model_dir):
    """Multi-turn greedy dialogues: the memo answers the openings and first states, the caches catch up after."""
    played = []
    for entries in (4096, 0):
        lm = load(tiny_model_dir, entries)
        proj = UpProjection.pca(lm.model.get_input_embeddings().weight,
                                PrefixConfig(action_dim=4, tokens=2, position="before_reply"))
        cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)
        lockstep = Lockstep(lm, proj, cfg)
        runs = []
        for _ in range(2):  # the second play meets every unprefixed reply and state of the first
            dialogues = [Dialogue.open(task, side, True, cfg) for side in (0, 1) for task in make_tasks(2)]
            lockstep.start(dialogues, 0)
            states = [lockstep.observe(dialogues)]
            for turn in range(2):
                lockstep.step(dialogues, torch.full((4, 4), 0.3 * turn), (1 + turn, 5 + turn))
                states.append(lockstep.observe(dialogues))
            runs.append(([[u.text for u in d.turns] for d in dialogues], torch.stack(states)))
        played.append((runs, lm.memo.hits, lockstep.counts["generated_tokens"]))
    (memo_runs, hits, _), (plain_runs, no_hits, _) = played
    assert hits > 0 and no_hits == 0
    for (texts, states), (plain_texts, plain_states) in zip(memo_runs, plain_runs, strict=True):
        assert texts == plain_texts and torch.allclose(states, plain_states, atol=1e-5)
