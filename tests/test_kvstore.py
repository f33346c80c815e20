"""The key/value store: text read once is not read again by later chats, and the numbers stay FrozenLM's."""

from __future__ import annotations

import pytest
import torch

from dat.action.projection import PrefixConfig, UpProjection
from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
from dat.lm.frozen import FrozenLM
from dat.lm.kvcache import Cached, extend
from dat.lm.kvstore import BLOCK, KVStore
from dat.lm.loading import ModelConfig
from tests.dialogue_tasks import GREEDY, NEVER, make_tasks

SYSTEM = "You sell a used road bike for $180 in your garage. The buyer is a student. " * 3
CHATS = [
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Would you take $80?"}],
    [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Does it have new tyres?"}],
    [{"role": "system", "content": "Be kind and brief."}, {"role": "user", "content": "The heater is broken."}],
]


@pytest.fixture()
def lm(tiny_model_dir) -> FrozenLM:
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir), memo_entries=0))


@pytest.fixture()
def reads(lm):
    """Rows and positions of each forward call of the transformer body."""
    shapes: list[tuple[int, int]] = []

    def hook(_, args, kwargs):
        read = kwargs["inputs_embeds"] if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]
        shapes.append(tuple(read.shape[:2]))

    handle = lm.model.model.register_forward_pre_hook(hook, with_kwargs=True)
    yield shapes
    handle.remove()


def shared_blocks(lm, a, b) -> int:
    """Tokens in the whole blocks two chats begin with alike."""
    x, y = lm.encode(a), lm.encode(b)
    same = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    return same // BLOCK * BLOCK


def test_a_chat_that_begins_with_stored_text_reads_only_the_rest(lm, reads):
    lm.states(CHATS[:1], caches=[Cached()])
    shared = shared_blocks(lm, CHATS[0], CHATS[1])
    assert shared >= 3 * BLOCK and lm.kv_store.reused_tokens == 0
    reads.clear()
    cache = Cached()
    state = lm.states(CHATS[1:2], caches=[cache])
    assert reads == [(1, len(lm.encode(CHATS[1])) - shared)]
    assert lm.kv_store.reused_tokens == shared
    assert torch.allclose(state, lm.states(CHATS[1:2]), atol=1e-5)
    fresh = Cached()
    extend(lm.model, [fresh], [cache.ids])  # the keys and values it took over are those of a fresh read
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(cache.keys + cache.values, fresh.keys + fresh.values,
                                                                strict=True))


def test_chats_of_one_call_that_begin_alike_read_their_common_text_once(lm, reads):
    # A chat, an unrelated one, the first again (its task under a second condition), one with its system text.
    chats = [CHATS[0], CHATS[2], CHATS[0], CHATS[1]]
    states = lm.states(chats, caches=[Cached() for _ in chats])
    lengths = [len(lm.encode(c)) for c in chats]
    tails = [lengths[0] - lengths[0] // BLOCK * BLOCK, lengths[3] - shared_blocks(lm, chats[0], chats[3])]
    # First the chats that begin differently (apart: their lengths differ too much to pad), then the rest
    # on top of what those stored: the repeat reads less than a block, the relative what follows the system text.
    assert reads == [(1, lengths[0]), (1, lengths[1]), (1, max(tails)), (1, min(tails))]
    assert sum(rows * width for rows, width in reads) < sum(lengths) - 3 * BLOCK
    assert torch.allclose(states, lm.states(chats), atol=1e-5)


def test_lockstep_dialogues_equal_those_played_without_a_store(tiny_model_dir):
    played = []
    for mib in (1024, 0):
        lm = FrozenLM.load(ModelConfig(name=str(tiny_model_dir), kv_store_mib=mib, memo_entries=0))
        proj = UpProjection.pca(lm.model.get_input_embeddings().weight,
                                PrefixConfig(action_dim=4, tokens=2, position="before_reply"))
        cfg = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)
        lockstep = Lockstep(lm, proj, cfg)
        tasks = make_tasks(2)  # each task twice, with each side steered: the second of a task reuses the first
        dialogues = [Dialogue.open(task, side, side == 1, cfg) for side in (0, 1) for task in tasks]
        lockstep.start(dialogues, 0)
        states = [lockstep.observe(dialogues)]
        for turn in range(2):
            lockstep.step(dialogues, torch.full((4, 4), 0.3 * turn), (1 + turn, 5 + turn))
            states.append(lockstep.observe(dialogues))
        assert lockstep.counts["kv_store_reused_tokens"] == lm.kv_store.reused_tokens  # perf/ in W&B
        played.append(([[u.text for u in d.turns] for d in dialogues], torch.stack(states), lm.kv_store))
    (texts, states, store), (plain_texts, plain_states, off) = played
    assert texts == plain_texts and torch.allclose(states, plain_states, atol=1e-5)
    assert store.reused_tokens > 0 and len(store) > 0
    assert off.reused_tokens == 0 and len(off) == 0 and off.bytes == 0


def test_the_budget_drops_the_least_recently_used_blocks_and_keeps_a_run_s_start(lm):
    entries = [Cached() for _ in CHATS]
    extend(lm.model, entries, [lm.encode(c) for c in CHATS], store=lm.kv_store)
    one = lm.kv_store.bytes / len(lm.kv_store)
    small = KVStore(budget_mib=1)
    small.budget = int(4 * one)  # room for four blocks
    for entry in entries:
        small.add(entry)
    assert len(small) == 4 and small.bytes <= small.budget
    last = entries[-1]  # the last run stored is the most recent, its first block most of all
    assert small.seed(Cached(), last.ids) == min(4, len(last) // BLOCK) * BLOCK
    with pytest.raises(ValueError, match="model.kv_store_mib"):
        KVStore(-1)
    with pytest.raises(ValueError, match="empty"):
        small.seed(entries[0], entries[0].ids)


def test_clear_empties_the_store(lm):
    lm.states(CHATS[:1], caches=[Cached()])
    assert len(lm.kv_store) and lm.kv_store.bytes
    lm.kv_store.clear()
    assert len(lm.kv_store) == 0 and lm.kv_store.bytes == 0


def test_a_mean_pooled_state_reads_only_what_the_store_and_the_cache_do_not_cover(lm, reads):
    """A pooled read keeps the layer's hidden rows with the cache and the stored blocks: the next chat that
    begins alike, and the next turn of the same chat, read only their new tokens; the mean stays a full read's."""
    lm.states(CHATS[:1], layer=1, caches=[Cached()], pool="mean")
    shared = shared_blocks(lm, CHATS[0], CHATS[1])
    reads.clear()
    cache = Cached()
    pooled = lm.states(CHATS[1:2], layer=1, caches=[cache], pool="mean")
    assert reads == [(1, len(lm.encode(CHATS[1])) - shared)]
    assert torch.allclose(pooled, lm.states(CHATS[1:2], layer=1, pool="mean"), atol=1e-5)
    longer = CHATS[1] + [{"role": "assistant", "content": "Yes, new tyres."}, {"role": "user", "content": "Good."}]
    reads.clear()
    pooled = lm.states([longer], layer=1, caches=[cache], pool="mean")
    assert len(reads) == 1 and reads[0][1] < len(lm.encode(longer)) - shared
    assert torch.allclose(pooled, lm.states([longer], layer=1, pool="mean"), atol=1e-5)


def test_a_last_token_read_does_not_lend_its_blocks_to_a_pooled_one(lm, reads):
    """Blocks stored without hidden rows cannot make a mean: the pooled read reads them (and then keeps them)."""
    lm.states(CHATS[:1], caches=[Cached()])
    reads.clear()
    pooled = lm.states(CHATS[:1], layer=1, caches=[Cached()], pool="mean")
    assert reads == [(1, len(lm.encode(CHATS[0])))]
    assert torch.allclose(pooled, lm.states(CHATS[:1], layer=1, pool="mean"), atol=1e-5)
    reads.clear()
    lm.states(CHATS[:1], layer=1, caches=[Cached()], pool="mean")
    tail = len(lm.encode(CHATS[0])) % BLOCK
    assert reads == ([(1, tail)] if tail else [])
