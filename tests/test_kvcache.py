"""Cached chats give FrozenLM's uncached numbers while reading only the tokens a chat gained."""

from __future__ import annotations

import pytest
import torch

from dat.action.projection import PrefixConfig, UpProjection
from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.kvcache import Cached, ReservedLayer, assemble, extend, read_batches, shared_length
from dat.lm.loading import ModelConfig
from tests.dialogue_tasks import NEVER, LengthJudge, make_tasks
from tests.test_rollout import collect

GREEDY = SamplingConfig(max_new_tokens=8, do_sample=False)
OPENING = [
    [{"role": "system", "content": "You sell a bike for $180."}, {"role": "user", "content": "Would you take $80?"}],
    [{"role": "system", "content": "Be kind and brief."}, {"role": "user", "content": "The heater is broken."}],
]


def grown(chat: list[dict], *turns: str) -> list[dict]:
    roles = ("assistant", "user")
    return list(chat) + [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]


@pytest.fixture(scope="module")
def lm(tiny_model_dir) -> FrozenLM:
    """Without a store (model.kv_store_mib=0): here every first read is a read (tests/test_kvstore.py)."""
    return FrozenLM.load(ModelConfig(name=str(tiny_model_dir), kv_store_mib=0, memo_entries=0))


@pytest.fixture()
def read_lengths(lm):
    """Number of positions each forward call of the transformer body computes."""
    lengths: list[int] = []

    def hook(_, args, kwargs):
        read = kwargs["inputs_embeds"] if kwargs.get("inputs_embeds") is not None else kwargs["input_ids"]
        lengths.append(read.shape[1])

    handle = lm.model.model.register_forward_pre_hook(hook, with_kwargs=True)
    yield lengths
    handle.remove()


def test_shared_length():
    assert shared_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert shared_length([], [1]) == 0 and shared_length([1, 2], [1, 2]) == 2


def test_states_match_uncached_and_read_only_new_tokens(lm, read_lengths):
    caches = [Cached(), Cached()]
    first = lm.states(OPENING, caches=caches)
    assert torch.allclose(first, lm.states(OPENING), atol=1e-5)
    heads = [len(c) for c in caches]
    later = [grown(OPENING[0], "No, $150 at least.", "Fine, $150."), grown(OPENING[1], "I will call a plumber.")]
    read_lengths.clear()
    states = lm.states(later, caches=caches)
    assert torch.allclose(states, lm.states(later), atol=1e-5)
    new = [len(c) - h for c, h in zip(caches, heads, strict=True)]
    # One pass read only the new tokens and the reply header; the header was then dropped from the cache.
    assert read_lengths[0] == max(new) + len(lm._header_ids)  # (then the uncached call above read all)
    assert max(new) < min(len(lm.encode(c)) for c in later)
    assert all(c.ids == lm.encode(chat)[: len(c)] and lm.encode(chat)[len(c):] == lm._header_ids
               for c, chat in zip(caches, later, strict=True))
    # A chat that changed in the middle is cut back to the shared part and recomputed from there.
    edited = [grown(OPENING[0], "No, $170 at least.", "Fine, $150."), later[1]]
    assert torch.allclose(lm.states(edited, caches=caches), lm.states(edited), atol=1e-5)
    assert caches[0].ids == lm.encode(edited[0])[: len(caches[0])]


def test_a_state_of_a_chat_its_cache_holds_whole_reads_only_the_last_token_again(lm, read_lengths):
    ids = lm.encode(OPENING[0])
    caches = [Cached()]
    extend(lm.model, caches, [ids])
    read_lengths.clear()
    state = extend(lm.model, caches, [ids], layer=-1)
    assert read_lengths == [1] and caches[0].ids == ids
    assert torch.allclose(state.float(), lm.states(OPENING[:1]), atol=1e-5)


def test_rows_of_very_different_lengths_are_read_apart_with_the_same_states(lm, read_lengths):
    assert read_batches([10, 300, 280, 12, 11]) == [[1, 2], [3, 4, 0]]  # padding within 10 % of each read
    assert read_batches([100, 80], padding=0.25) == [[0, 1]]  # 20 % padding: one read at 25 %
    assert read_batches([100, 80]) == [[0], [1]]  # ...two at the default 10 %
    assert read_batches([]) == []
    caches = [Cached(), Cached()]
    lm.states(OPENING[:1], caches=caches[:1])  # the first chat was read before, the second never
    later = [grown(OPENING[0], "No."), OPENING[1]]
    before = [len(c) for c in caches]
    read_lengths.clear()
    states = lm.states(later, caches=caches)
    new = [len(c) - b for c, b in zip(caches, before, strict=True)]
    header = len(lm._header_ids)  # read with each chat's new tokens, then dropped from the cache
    assert read_lengths == [max(new) + header, min(new) + header]
    assert torch.allclose(states, lm.states(later), atol=1e-5)


def test_the_final_state_of_an_ended_dialogue_reads_only_its_last_lines(lm, read_lengths):
    proj = UpProjection.pca(lm.model.get_input_embeddings().weight,
                            PrefixConfig(action_dim=4, tokens=2, position="before_reply"))
    cfg = EnvConfig(max_turns=1, sampling=GREEDY, leave_phrase=NEVER)
    lockstep = Lockstep(lm, proj, cfg)
    dialogues = [Dialogue.open(task, 0, False, cfg) for task in make_tasks(2)]
    lockstep.start(dialogues, 0)
    lockstep.observe(dialogues)
    lockstep.step(dialogues, torch.zeros(2, 4), (1, 2))
    assert all(d.done and list(d.caches) == [d.steered] for d in dialogues)  # the partner's cache is gone
    read_lengths.clear()
    final = lockstep.observe(dialogues)
    assert max(read_lengths) < min(len(lm.encode(d.view(d.steered))) for d in dialogues) / 2
    assert all(not d.caches for d in dialogues)  # freed once the final state is read
    assert torch.allclose(final, lm.states([d.view(d.steered) for d in dialogues]), atol=1e-5)


def test_a_reply_made_without_a_prefix_is_kept_and_not_read_again(lm, read_lengths):
    caches = [Cached(), Cached()]
    steered = [None, torch.randn(2, lm.hidden_size) * 0.05]  # the second row's reply was made beside a prefix
    replies = lm.generate(OPENING, steered, GREEDY, "before_reply", caches=caches)
    heads = [len(lm.encode(chat)) for chat in OPENING]
    assert len(caches[0]) > heads[0] and len(caches[1]) == heads[1] - len(lm._header_ids)
    later = [grown(chat, reply, "Tell me more.") for chat, reply in zip(OPENING, replies, strict=True)]
    kept = [shared_length(c.ids, lm.encode(chat)) for c, chat in zip(caches, later, strict=True)]
    assert kept[0] > heads[0]  # the reply's tokens agree with the next chat's, so they are not read again
    read_lengths.clear()
    states = lm.states(later[:1], caches=caches[:1])
    assert read_lengths == [len(lm.encode(later[0])) - kept[0]]  # the user's new line and the header only
    assert torch.allclose(states, lm.states(later[:1]), atol=1e-5)
    assert torch.allclose(lm.states(later[1:], caches=caches[1:]), lm.states(later[1:]), atol=1e-5)


def test_a_reserved_layer_writes_into_its_room_and_holds_what_concatenation_would():
    torch.manual_seed(0)
    like = torch.randn(3, 5, 4)  # (kv_heads, T, head_dim) of one cached sequence
    layer = ReservedLayer.padded(like, batch=2, width=5, room=3)
    layer.keys[1], layer.values[1] = like, -like
    expected_k, expected_v = layer.keys.clone(), layer.values.clone()
    buffer = layer.keys.data_ptr()
    for _ in range(3):  # within the room: written in place, never copied
        k, v = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
        keys, values = layer.update(k, v)
        expected_k, expected_v = torch.cat([expected_k, k], 2), torch.cat([expected_v, v], 2)
        assert keys.data_ptr() == buffer and torch.equal(keys, expected_k) and torch.equal(values, expected_v)
    assert torch.equal(layer.keys[0, :, :5], torch.zeros(3, 5, 4))  # left padding is zeros, not garbage
    k = torch.randn(2, 3, 2, 4)  # past the room: made again, larger, same contents
    keys, values = layer.update(k, k)
    assert keys.data_ptr() != buffer and torch.equal(keys, torch.cat([expected_k, k], 2))
    assert layer.get_seq_length() == 10
    layer.crop(-4)  # cropping keeps the views: the next write lands in place
    buffer = layer.keys.data_ptr()
    keys, _ = layer.update(k, k)
    assert keys.data_ptr() == buffer and torch.equal(keys, torch.cat([expected_k[:, :, :6], k], 2))
    layer.batch_select_indices(torch.tensor([1]))  # replaced tensors: re-reserved, not written past their end
    keys, _ = layer.update(k[:1], k[:1])
    assert keys.shape == (1, 3, 10, 4) and torch.equal(keys[:, :, -2:], k[:1])
    fresh = ReservedLayer(room=2)
    keys, _ = fresh.update(k, k)
    assert torch.equal(keys, k) and fresh.update(k[:, :, :1], k[:, :, :1])[0].data_ptr() == keys.data_ptr()


def test_a_batch_masks_left_padded_caches_and_pads_suffixes_on_the_side_asked():
    def entry(n: int) -> Cached:
        return Cached(ids=list(range(n)), keys=[torch.randn(2, n, 4)], values=[torch.randn(2, n, 4)])

    entries, suffixes = [entry(3), entry(1)], [1, 3]
    cache, mask, positions = assemble(entries, suffixes, new_tokens=2)
    assert mask.tolist() == [[1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]]  # cache width 3, suffix span 3
    assert positions[0, 0] == 3 and positions[1].tolist() == [1, 2, 3]
    assert torch.equal(cache.layers[0].keys[0, :, :3], entries[0].keys[0])
    assert torch.equal(cache.layers[0].keys[1, :, 2:3], entries[1].keys[0])  # right-aligned
    _, mask, positions = assemble(entries, suffixes, new_tokens=2, suffix_padding="left")
    assert mask.tolist() == [[1, 1, 1, 0, 0, 1], [0, 0, 1, 1, 1, 1]]  # every last token in the last column
    assert positions[0, -1] == 3 and positions[1].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="suffix_padding"):
        assemble(entries, suffixes, suffix_padding="middle")


def test_generation_matches_uncached_with_and_without_prefixes(lm):
    chats = [grown(OPENING[0], "No, $150 at least.", "Fine, $150."), OPENING[1]]
    caches = [Cached(), Cached()]
    assert lm.generate(chats, None, GREEDY, caches=caches) == lm.generate(chats, None, GREEDY)
    torch.manual_seed(0)
    prefixes = list(torch.randn(2, 2, lm.hidden_size))
    for position in ("before_reply", "start"):
        assert lm.generate(chats, prefixes, GREEDY, position, caches=caches) == lm.generate(
            chats, prefixes, GREEDY, position)
    mixed = [prefixes[0], None]  # a steered and an unsteered row: suffixes of different lengths
    assert lm.generate(chats, mixed, GREEDY, "before_reply", caches=caches) == lm.generate(
        chats, mixed, GREEDY, "before_reply")
    assert lm.generate(chats, mixed, GREEDY, "before_reply", caches=caches)[1] == lm.generate(
        chats[1:], None, GREEDY, caches=caches[1:])[0]  # the unsteered row as it is alone
    sampled = SamplingConfig(max_new_tokens=6, temperature=1.0)
    assert lm.generate(chats, None, sampled, seed=3, caches=caches) == lm.generate(chats, None, sampled, seed=3)
    with pytest.raises(ValueError, match="one per dialogue"):
        lm.generate(chats, None, GREEDY, caches=caches[:1])


def test_cached_rollouts_equal_uncached_ones(lm):
    proj = UpProjection.pca(lm.model.get_input_embeddings().weight, PrefixConfig(action_dim=4, tokens=2))
    runs = {}
    for kv_cache in (True, False):
        cfg = EnvConfig(max_turns=3, sampling=GREEDY, leave_phrase="Dea", kv_cache=kv_cache)
        runs[kv_cache] = collect(lm, proj, make_tasks(), "random", 5, cfg, LengthJudge(), seed=7)
    for cached, plain in zip(runs[True], runs[False], strict=True):
        assert cached.record == plain.record
        torch.testing.assert_close(torch.from_numpy(cached.next_states), torch.from_numpy(plain.next_states),
                                   atol=1e-4, rtol=0)
