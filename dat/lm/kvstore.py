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
        self._blocks: OrderedDict[tuple[int, ...], tuple[list[Tensor], list[Tensor]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0

    def seed(self, entry: Cached, ids: Sequence[int]) -> int:
        """Give the empty ``entry`` the longest run of stored blocks that ``ids`` begins with; return its length."""
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
        entry.ids = list(found[-1])
        entry.keys = [torch.cat([keys[layer] for keys, _ in blocks], 1) for layer in range(len(blocks[0][0]))]
        entry.values = [torch.cat([values[layer] for _, values in blocks], 1) for layer in range(len(blocks[0][1]))]
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
            if key in self._blocks:
                continue
            start = end - self.block
            block = ([k[:, start:end].clone() for k in entry.keys], [v[:, start:end].clone() for v in entry.values])
            self._blocks[key] = block
            self.bytes += _nbytes(block)
        for key in reversed(keys):
            self._blocks.move_to_end(key)
        while self.bytes > self.budget and self._blocks:
            self.bytes -= _nbytes(self._blocks.popitem(last=False)[1])


def _nbytes(block: tuple[list[Tensor], list[Tensor]]) -> int:
    return sum(t.numel() * t.element_size() for part in block for t in part)
