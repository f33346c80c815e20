"""Keys and values of token sequences kept between LM calls, so a growing chat costs only its new tokens.

A dialogue's chats grow by a turn or two per round and are otherwise unchanged, yet a plain call
re-reads the whole prompt (system text, profiles, history: 250-500 tokens) every time. On a 2-core
CPU that prefill is most of the cost of a batched round. A ``Cached`` holds one sequence's ids and
its per-layer keys and values; ``extend`` brings a batch of them up to new ids by computing only the
tokens after the longest shared prefix, and ``forward`` / ``generate`` run a short suffix (the reply
header, with or without prefix embeddings) on top.

The layout reproduces an uncached left-padded call token for token: each cached row is left-padded
to the batch's widest row, masked, and the suffix gets positions that continue the row's own count,
so results match ``FrozenLM`` to float rounding (``tests/test_kvcache.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor
from transformers import DynamicCache, LogitsProcessorList
from transformers.cache_utils import DynamicLayer


@dataclass
class Cached:
    """One sequence's token ids with the keys and values of every layer, ``(kv_heads, T, head_dim)``.

    ``hidden`` optionally holds the hidden states ``(H, hidden)`` of one layer (``hidden_layer``) for the first
    ``H <= T`` tokens: what a pooled read (``extend(..., pool="mean")``) needs to average over the whole
    sequence without reading it again. Reads that ask for no layer (generation) leave the rows they add
    uncovered; the next pooled read reads those tokens again (a turn or two, not the chat)."""

    ids: list[int] = field(default_factory=list)
    keys: list[Tensor] = field(default_factory=list)
    values: list[Tensor] = field(default_factory=list)
    hidden: Tensor | None = None
    hidden_layer: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def covered(self, layer: int) -> int:
        """How many leading tokens have their hidden state at ``layer`` kept."""
        return 0 if self.hidden is None or self.hidden_layer != layer else min(len(self.hidden), len(self.ids))

    def crop(self, n: int) -> None:
        """Keep the first ``n`` tokens."""
        if n < len(self.ids):
            self.ids = self.ids[:n]
            self.keys = [k[:, :n] for k in self.keys]
            self.values = [v[:, :n] for v in self.values]
        if self.hidden is not None and len(self.hidden) > n:
            self.hidden = self.hidden[:n]


def shared_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class ReservedLayer(DynamicLayer):
    """A cache layer whose keys and values are views of buffers with room after them for the tokens to come.

    ``DynamicLayer`` grows by concatenation, so every generated token copies the layer's whole cache,
    a cost that grows with the chat (``benchmarks/decode_costs.py`` measures it). Here a step writes
    only its new tokens into the room. When the room runs out, or another cache method replaced the
    tensors (cropping keeps the views and stays in place), the buffers are made again with at least
    as much room as they hold tokens, so growth stays amortised. The room is never read before it
    is written.
    """

    def __init__(self, room: int):
        super().__init__()
        self.room = room
        self._keys = self._values = None

    @classmethod
    def padded(cls, like: Tensor, batch: int, width: int, room: int) -> ReservedLayer:
        """A layer holding ``width`` zero positions per row, ``(batch, kv_heads, width, head_dim)`` shaped as
        ``like`` ``(kv_heads, T, head_dim)``, to be filled in place through ``keys`` / ``values``.

        Zeros, not uninitialised memory: the left padding is masked, but a masked NaN would still poison
        the weighted sum of the values."""
        layer = cls(room)
        layer.device, layer.is_initialized = like.device, True
        layer._keys, layer._values = (like.new_zeros(batch, like.shape[0], width + room, like.shape[2])
                                      for _ in range(2))
        layer.keys, layer.values = layer._keys[:, :, :width], layer._values[:, :, :width]
        return layer

    def _reserve(self, keys: Tensor, values: Tensor, room: int) -> None:
        batch, heads, length, dim = keys.shape
        self._keys = keys.new_empty(batch, heads, length + room, dim)
        self._values = values.new_empty(batch, heads, length + room, values.shape[-1])
        self._keys[:, :, :length], self._values[:, :, :length] = keys, values
        self.keys, self.values = self._keys[:, :, :length], self._values[:, :, :length]

    def _holds(self, length: int) -> bool:
        """Whether ``keys`` / ``values`` are still views of the buffers (not tensors another method put there)
        and the buffers fit ``length`` tokens."""
        if self._keys is None:
            return False
        views = all(
            view._base is buffer and view.storage_offset() == 0 and view.shape[:2] == buffer.shape[:2]
            for view, buffer in ((self.keys, self._keys), (self.values, self._values)))
        return views and length <= self._keys.shape[2]

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        if not self.is_initialized:
            self.device, self.is_initialized = key_states.device, True
            self._reserve(key_states[:, :, :0], value_states[:, :, :0], key_states.shape[2] + self.room)
        start, new = self.keys.shape[2], key_states.shape[2]
        if not self._holds(start + new):
            self._reserve(self.keys, self.values, max(self.room, start + new))
        self._keys[:, :, start : start + new] = key_states
        self._values[:, :, start : start + new] = value_states
        self.keys, self.values = self._keys[:, :, : start + new], self._values[:, :, : start + new]
        return self.keys, self.values


def assemble(entries: Sequence[Cached], suffix_lengths: Sequence[int], new_tokens: int = 0,
             suffix_padding: str = "right") -> tuple[DynamicCache, Tensor, Tensor]:
    """A batch cache (rows left-padded), the attention mask over cache + suffix, and suffix position ids.

    Suffixes are padded to the longest one, masked: after their tokens (``"right"``: a read, whose
    padding the real tokens before it never attend to, the model being causal) or before them
    (``"left"``: generation, which continues from every row's last column). Each real suffix token gets
    the position it would have alone; a padded one, the positions around it (it is never attended to).
    The cache has room for the suffix and ``new_tokens`` more (``ReservedLayer``); with no entry holding
    a token yet it is an empty ``DynamicCache``, whose first write costs what writing into room would.
    """
    lengths = [len(e) for e in entries]
    width, span = max(lengths), max(suffix_lengths)
    room = span + new_tokens
    full = next((e for e in entries if len(e)), None)
    cache = DynamicCache()
    if full is not None:
        cache.layers = []
        for layer in range(len(full.keys)):
            reserved = ReservedLayer.padded(full.keys[layer], len(entries), width, room)
            for i, entry in enumerate(entries):  # each row written once, right-aligned (left padding)
                if len(entry):
                    reserved.keys[i, :, width - len(entry):] = entry.keys[layer]
                    reserved.values[i, :, width - len(entry):] = entry.values[layer]
            cache.layers.append(reserved)
    device = next((e.keys[0].device for e in entries if e.keys), torch.device("cpu"))
    if suffix_padding not in ("right", "left"):
        raise ValueError(f"suffix_padding={suffix_padding!r} must be 'right' or 'left'.")
    left = suffix_padding == "left"
    mask = torch.tensor([
        [0] * (width - n) + [1] * n + ([0] * (span - s) + [1] * s if left else [1] * s + [0] * (span - s))
        for n, s in zip(lengths, suffix_lengths, strict=True)
    ], device=device)
    shift = [span - s if left else 0 for s in suffix_lengths]
    positions = torch.stack([torch.arange(span, device=device) + n - k for n, k in zip(lengths, shift, strict=True)])
    return cache, mask, positions.clamp(min=0)


def suffix(model, prefix: Tensor | None, ids: Sequence[int]) -> Tensor:
    """Embeddings ``(S, hidden)`` of a suffix: the prefix embeddings (if any), then the tokens ``ids``."""
    embedding = model.get_input_embeddings()
    tokens = embedding(torch.tensor(list(ids), dtype=torch.long, device=embedding.weight.device))
    return tokens if prefix is None else torch.cat([prefix.to(tokens), tokens], 0)


def forward(model, entries: Sequence[Cached], rows: Sequence[Tensor], **kwargs):
    """The model (or its decoder alone) over per-entry suffix embeddings ``rows[i]`` ``(S_i, hidden)``, on top of
    the caches."""
    cache, mask, positions = assemble(entries, [r.shape[0] for r in rows])
    span = positions.shape[1]
    embeds = torch.stack([torch.cat([r, r.new_zeros(span - r.shape[0], r.shape[1])], 0) for r in rows])
    return model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, cache=cache,
                 use_cache=True, **kwargs)


PADDING = 0.1
"""The most padding one batched read in ``extend`` may add, as a share of its real tokens. Rows whose new
parts differ much in length (a chat read for the first time beside chats that gained one line) are read
in separate calls instead: a padded position costs the matmuls of a real one, and a long read is as fast
alone as in a batch; but each pass also streams every weight once, so too many passes cost too. The value is
the fastest of those measured on the default rollout (docs/performance.md, "Why not ten times")."""


def read_batches(lengths: Sequence[int], padding: float = PADDING) -> list[list[int]]:
    """Indices of ``lengths`` grouped into reads: longest first, a group grows while its padded size (rows x
    its longest) stays within ``1 + padding`` times its real tokens."""
    batches: list[list[int]] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= (1 + padding) * (real + lengths[i]):
            batches[-1].append(i)
            real += lengths[i]
        else:
            batches.append([i])
            real = lengths[i]
    return batches


POOLS = ("last", "mean")


class Store(Protocol):
    """What ``extend`` asks of a store of shared prefixes (``dat.lm.kvstore.KVStore`` is the one we have)."""

    budget: int
    """Bytes it may hold (0: off)."""
    block: int
    """Tokens per stored block: entries whose ids share their first block share their stored prefix."""

    def seed(self, entry: Cached, ids: Sequence[int], layer: int | None = None) -> int:
        """Give an empty ``entry`` the stored blocks ``ids`` begin with; returns how many tokens it took."""

    def add(self, entry: Cached) -> None:
        """Keep what ``entry`` holds for the chats to come."""


@torch.no_grad()
def extend(model, entries: Sequence[Cached], ids: Sequence[Sequence[int]], layer: int | None = None,
           store: Store | None = None, pool: str = "last") -> Tensor | None:
    """Make each entry hold exactly ``ids[i]``, computing only the tokens after the shared prefix (one call per
    group of similar lengths, ``read_batches``).

    With ``layer``, also return a state of each sequence at that layer ``(batch, hidden)``, read in the same
    pass. ``pool="last"``: its last token's hidden state (an entry that already holds all of ``ids[i]`` reads
    its last token again). ``pool="mean"``: the mean over all its tokens; the entry keeps the hidden rows
    (``Cached.hidden``), so the next read averages over the old rows and reads only the tokens they miss.

    With a ``store`` (``dat.lm.kvstore``), an empty entry first takes the stored blocks its ids begin with,
    and what it then holds is stored for the chats to come. Empty entries that begin with a block another one
    of this call begins with (the same task under several evaluation conditions, the scenario lines both
    agents read) wait for that one to be read and stored, then take it over and read only the rest.
    """
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r} is not one of: {', '.join(POOLS)}.")
    if pool == "mean" and layer is None:
        raise ValueError("extend(pool='mean') needs the layer to average.")
    if store is None or not store.budget:
        return _extend(model, entries, ids, layer, pool)
    first = [i for i, entry in enumerate(entries) if not len(entry)]
    waiting = set(_repeats(first, ids, store.block))
    passes = [[i for i in range(len(entries)) if i not in waiting], sorted(waiting)]
    last: list[Tensor | None] = [None] * len(entries)
    for now in passes:
        if not now:
            continue
        fresh = [i for i in now if not len(entries[i])]
        for i in fresh:
            store.seed(entries[i], ids[i], layer if pool == "mean" else None)
        states = _extend(model, [entries[i] for i in now], [ids[i] for i in now], layer, pool)
        for i in fresh:
            store.add(entries[i])
        for k, i in enumerate(now):
            last[i] = None if states is None else states[k]
    return None if layer is None else torch.stack(last)


def _repeats(first: Sequence[int], ids: Sequence[Sequence[int]], block: int) -> list[int]:
    """Those of ``first`` whose ids begin with the same whole ``block`` as an earlier one's."""
    seen: set[tuple[int, ...]] = set()
    repeats = []
    for i in first:
        head = tuple(ids[i][:block])
        if len(head) == block and head in seen:
            repeats.append(i)
        seen.add(head)
    return repeats


def _extend(model, entries: Sequence[Cached], ids: Sequence[Sequence[int]], layer: int | None,
            pool: str = "last") -> Tensor | None:
    todo: list[tuple[Cached, list[int]]] = []
    mean = pool == "mean"
    for entry, target in zip(entries, ids, strict=True):
        keep = shared_length(entry.ids, target)
        if layer is None:
            entry.crop(keep)
        elif mean:  # tokens without their kept hidden rows are read again
            entry.crop(min(keep, entry.covered(layer)))
            if entry.covered(layer) == 0:
                entry.hidden, entry.hidden_layer = None, layer
        else:
            entry.crop(min(keep, len(target) - 1))
        if len(target) > len(entry):
            todo.append((entry, list(target[len(entry):])))
    last: list[Tensor | None] = [None] * len(todo)
    for batch in read_batches([len(new) for _, new in todo]):
        states = _read(model, [todo[i] for i in batch], layer, keep_hidden=mean)
        for i, state in zip(batch, states, strict=True):
            last[i] = state
    if layer is None:
        return None
    if mean:
        return torch.stack([entry.hidden.float().mean(0) for entry in entries])
    return torch.stack(last)


def _read(model, todo: Sequence[tuple[Cached, list[int]]], layer: int | None,
          keep_hidden: bool = False) -> list[Tensor | None]:
    """One forward pass over each entry's new ids on top of its cache; the new keys and values are appended
    (and, with ``keep_hidden``, the new tokens' hidden states at ``layer`` to ``Cached.hidden``).
    Returns each entry's last new token's hidden state at ``layer`` (None without a layer)."""
    embedding = model.get_input_embeddings()
    rows = [embedding(torch.tensor(new, dtype=torch.long, device=embedding.weight.device)) for _, new in todo]
    width = max(len(e) for e, _ in todo)
    if layer is None:
        out = forward(model, [e for e, _ in todo], rows, logits_to_keep=1)
    else:
        out = forward(model.get_decoder(), [e for e, _ in todo], rows, output_hidden_states=layer != -1)
    for i, (entry, new) in enumerate(todo):
        fresh = [(cached.keys[i, :, width : width + len(new)], cached.values[i, :, width : width + len(new)])
                 for cached in out.cache.layers]
        if entry.keys:
            entry.keys = [torch.cat([k, f[0]], 1) for k, f in zip(entry.keys, fresh, strict=True)]
            entry.values = [torch.cat([v, f[1]], 1) for v, f in zip(entry.values, fresh, strict=True)]
        elif width == 0:  # views of this pass's own keys and values (nothing else in them): no copy
            entry.keys = [f[0] for f in fresh]
            entry.values = [f[1] for f in fresh]
        else:  # a copy, so that the batch buffer with its padding and other rows is not kept alive
            entry.keys = [f[0].clone() for f in fresh]
            entry.values = [f[1].clone() for f in fresh]
        entry.ids = entry.ids + new
    if layer is None:
        return [None] * len(todo)
    hidden = layer_states(out, layer)
    if keep_hidden:
        for i, (entry, new) in enumerate(todo):
            rows = hidden[i, : len(new)].clone()
            entry.hidden = rows if entry.hidden is None else torch.cat([entry.hidden, rows], 0)
            entry.hidden_layer = layer
    return [hidden[i, len(new) - 1] for i, (_, new) in enumerate(todo)]


def layer_states(decoder_output, layer: int) -> Tensor:
    """Layer ``layer``'s hidden states from the output of a decoder (``model.get_decoder()``, no LM head) called
    with ``output_hidden_states=layer != -1``: the last layer's need no copy of every layer's kept."""
    return decoder_output.last_hidden_state if layer == -1 else decoder_output.hidden_states[layer]


def suffix_starts(rows: Sequence[Tensor]) -> list[int]:
    """Where each suffix (so its prefix) starts in the first forward pass of ``generate``: suffixes are
    left-padded there to the longest."""
    span = max(r.shape[0] for r in rows)
    return [span - r.shape[0] for r in rows]


@torch.no_grad()
def generate(model, entries: Sequence[Cached], rows: Sequence[Tensor], config, processors: LogitsProcessorList,
             seed: int, plain: Sequence[Sequence[int] | None] | None = None) -> list[list[int]]:
    """Sampled or greedy continuations of cache + ``rows``; returns new token ids.

    Suffixes of different lengths (rows with and without a prefix) are left-padded inside the suffix
    span, masked, so every row's last token sits in the last column, where generation continues;
    positions follow the mask, so a padded row gets the positions it would have alone.

    ``plain[i]``: the token ids of row ``i``'s suffix when it is those tokens alone (no prefix), else None.
    Such a row's entry keeps the suffix and its reply (``_keep_replies``), so the next turn, whose chat
    holds the reply, does not read it again.
    """
    cache, mask, _ = assemble(entries, [r.shape[0] for r in rows], config.max_new_tokens, suffix_padding="left")
    total = mask.shape[1]  # cache width + suffix span: generate takes embeddings for the whole sequence
    embeds = torch.stack([torch.cat([r.new_zeros(total - r.shape[0], r.shape[1]), r], 0) for r in rows])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = model.generate(inputs_embeds=embeds, attention_mask=mask, cache=cache,
                             generation_config=config, logits_processor=processors).tolist()
    if plain is not None:
        _keep_replies(cache, entries, plain, out, total, set(config.eos_token_id))
    return out


def _keep_replies(cache: DynamicCache, entries: Sequence[Cached], plain: Sequence[Sequence[int] | None],
                  out: list[list[int]], generated_from: int, end_ids: set[int]) -> None:
    """Append to each entry with a plain suffix that suffix and the reply tokens the call fed back to the model
    (every drawn token but the last, up to the first end of turn), with their keys and values.

    The reply is kept as drawn; the next ``extend`` keeps it only as far as the next chat's ids agree."""
    steps = len(out[0])
    if cache.layers[0].keys.shape[2] != generated_from + steps - 1:
        raise RuntimeError("The generation cache does not hold the tokens fed back; cannot keep the replies.")
    for i, (entry, suffix_ids) in enumerate(zip(entries, plain, strict=True)):
        if suffix_ids is None:
            continue
        reply = out[i][: steps - 1]
        end = next((k for k, token in enumerate(reply) if token in end_ids), None)
        reply = reply if end is None else reply[: end + 1]
        start, stop = generated_from - len(suffix_ids), generated_from + len(reply)
        fresh = [(layer.keys[i, :, start:stop], layer.values[i, :, start:stop]) for layer in cache.layers]
        entry.keys = [torch.cat([k, f[0]], 1) for k, f in zip(entry.keys, fresh, strict=True)]
        entry.values = [torch.cat([v, f[1]], 1) for v, f in zip(entry.values, fresh, strict=True)]
        entry.ids = entry.ids + list(suffix_ids) + reply
