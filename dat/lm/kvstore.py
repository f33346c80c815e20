"""Keys and values of token blocks already read, shared by every later chat that begins with the same tokens.

A training run reads the same text again and again: each collection round draws from one task list, each
evaluation replays the same held-out tasks under three conditions (policy, unsteered, zero action) whose
first reads are identical, and both agents of a dialogue start with the same scenario lines. A chat's first
read is mostly its system text (about two thirds of the tokens a default dialogue reads; ``benchmarks/
rollout.py``), whose keys and values the model has often computed already. A token's keys and values depend
only on the tokens up to it (the model is causal and positions count from the chat's start), so any chat
that begins with the same tokens can take them over: automatic prefix caching, as vLLM does it, for the
HF path (``kvcache.extend``).

The store holds blocks of ``BLOCK`` tokens, each keyed by the whole id sequence up to its end (a block
means the same thing only after the same tokens), in least-recently-used order within a byte budget. A chat
read for the first time takes the longest run of stored blocks its ids begin with and reads only the rest;
its own full blocks are then stored. Results equal a fresh read up to the float rounding of batched matrix
products (``tests/test_kvstore.py``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from dat.lm.kvcache import Cached

BLOCK = 16
"""Tokens per stored block: chats share whole blocks only, so a shared run is used up to its last full
block (at most ``BLOCK - 1`` shared tokens are read again)."""


class KVStore:
    """Blocks of keys and values within ``budget_mib`` MiB, least recently used dropped first (0 keeps none).

    >>> store = KVStore(1024)                                    # doctest: +SKIP
    >>> kvcache.extend(model, entries, ids, store=store)         # doctest: +SKIP
    """

    def __init__(self, budget_mib: int, block: int = BLOCK):
        if budget_mib < 0:
            raise ValueError(f"model.kv_store_mib={budget_mib} must be >= 0 (0 turns the store off).")
        self.budget = budget_mib * 2**20
        self.block = block
        self.bytes = 0
        """Bytes the stored keys and values take."""
        self.reused_tokens = 0
        """Tokens whose keys and values a first read took from the store instead of computing them."""
        self._blocks: OrderedDict[tuple[int, ...], Block] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0

    def seed(self, entry: Cached, ids: Sequence[int], layer: int | None = None) -> int:
        """Give the empty ``entry`` the longest run of stored blocks that ``ids`` begins with; return its length.

        With ``layer`` (a pooled read), the entry also takes the hidden rows at that layer of the leading blocks
        that kept them (``Cached.hidden``); the read that follows reads again only what they do not cover."""
        if len(entry):
            raise ValueError("KVStore.seed fills empty entries only.")
        found = []
        for end in range(self.block, len(ids) + 1, self.block):
            key = tuple(ids[:end])
            if key not in self._blocks:
                break
            found.append(key)
        if not found:
            return 0
        for key in reversed(found):  # a run's first block stays the most recent: it is evicted last
            self._blocks.move_to_end(key)
        blocks = [self._blocks[key] for key in found]
        if layer is not None:  # a pooled read uses the run of blocks whose hidden rows were kept
            rows = [b.hidden for b in blocks if b.hidden is not None and b.layer == layer]
            n = next((k for k, b in enumerate(blocks) if b.hidden is None or b.layer != layer), len(blocks))
            if n == 0:
                return 0
            blocks, found, rows = blocks[:n], found[:n], rows[:n]
            entry.hidden, entry.hidden_layer = torch.cat(rows, 0), layer
        entry.ids = list(found[-1])
        entry.keys = [torch.cat([b.keys[i] for b in blocks], 1) for i in range(len(blocks[0].keys))]
        entry.values = [torch.cat([b.values[i] for b in blocks], 1) for i in range(len(blocks[0].values))]
        self.reused_tokens += len(entry)
        return len(entry)

    def add(self, entry: Cached) -> None:
        """Store ``entry``'s full blocks that are not stored yet, then drop the least recently used over budget."""
        if self.budget == 0:
            return
        keys = []
        for end in range(self.block, len(entry) + 1, self.block):
            key = tuple(entry.ids[:end])
            keys.append(key)
            start = end - self.block
            rows = entry.hidden[start:end].clone() if entry.covered(entry.hidden_layer) >= end else None
            known = self._blocks.get(key)
            if known is not None and (rows is None or known.hidden is not None):
                continue
            if known is not None:  # the same keys and values, now with the hidden rows a pooled read kept
                self.bytes -= known.nbytes()
            block = Block([k[:, start:end].clone() for k in entry.keys],
                          [v[:, start:end].clone() for v in entry.values],
                          rows, entry.hidden_layer if rows is not None else None)
            self._blocks[key] = block
            self.bytes += block.nbytes()
        for key in reversed(keys):
            self._blocks.move_to_end(key)
        while self.bytes > self.budget and self._blocks:
            self.bytes -= self._blocks.popitem(last=False)[1].nbytes()


@dataclass
class Block:
    """One stored block: per-layer keys and values ``(kv_heads, BLOCK, head_dim)``, and the hidden rows
    ``(BLOCK, hidden)`` of one layer when a pooled read kept them."""

    keys: list[Tensor]
    values: list[Tensor]
    hidden: Tensor | None = None
    layer: int | None = None

    def nbytes(self) -> int:
        tensors = [*self.keys, *self.values, *([self.hidden] if self.hidden is not None else [])]
        return sum(t.numel() * t.element_size() for t in tensors)
