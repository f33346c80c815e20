"""Results that are a function of a chat's token ids alone, kept so that the same chat is never computed twice.

Two things the frozen LM computes depend on nothing but the ids of the chat it reads and the call's settings:
a state (a layer's hidden vector, last token or mean) and a reply decoded greedily without a prefix. DAT's
collection asks for both again and again: with greedy decoding a one-turn task's partner opens with the same
line every time the same task and side come up, and the steered agent's state before its line is then the
same too, so a dataset of 10,000 episodes over 90 (task, side) setups reads each setup once and spends the
rest of its time on the steered lines, the only part that differs by action (``benchmarks/collection.py``).

Entries are keyed by a digest of the ids (a 300-token chat's id tuple would take more memory than its
state) and the settings that change the result, least recently used dropped first beyond ``entries``. A
memoised result is the one the first computation gave: equal to a fresh computation up to the float
rounding by which a row read in one batch differs from the same row in another (``tests/test_memo.py``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


class Memo:
    """Up to ``entries`` results, each under a ``kind`` (the call and its settings) and a chat's ids (0 keeps none).

    >>> memo = Memo(4)
    >>> memo.get(("state", -1, "mean"), [1, 2, 3]) is None
    True
    >>> memo.put(("state", -1, "mean"), [1, 2, 3], "s")
    >>> memo.get(("state", -1, "mean"), [1, 2, 3]), memo.hits, memo.misses
    ('s', 1, 1)
    """

    def __init__(self, entries: int):
        if entries < 0:
            raise ValueError(f"model.memo_entries={entries} must be >= 0 (0 turns the memo off).")
        self.entries = entries
        self.hits = 0
        """Lookups that found a result (a chat not computed again)."""
        self.misses = 0
        self._results: OrderedDict[tuple[Hashable, bytes], Any] = OrderedDict()

    def __len__(self) -> int:
        return len(self._results)

    def clear(self) -> None:
        self._results.clear()

    def get(self, kind: Hashable, ids: Sequence[int]) -> Any | None:
        """The result kept for ``kind`` and ``ids``, or None."""
        if not self.entries:
            return None
        key = (kind, _digest(ids))
        found = self._results.get(key)
        if found is None:
            self.misses += 1
            return None
        self._results.move_to_end(key)
        self.hits += 1
        return found

    def put(self, kind: Hashable, ids: Sequence[int], result: Any) -> None:
        """Keep ``result`` for ``kind`` and ``ids`` (dropping the least recently used beyond ``entries``)."""
        if not self.entries:
            return
        key = (kind, _digest(ids))
        self._results[key] = result
        self._results.move_to_end(key)
        while len(self._results) > self.entries:
            self._results.popitem(last=False)


def _digest(ids: Sequence[int]) -> bytes:
    return hashlib.blake2b(np.asarray(ids, np.int64).tobytes(), digest_size=16).digest()
