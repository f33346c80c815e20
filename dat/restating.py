"""Whether a line restates a text (its speaker's goal, say): word-pair overlap or a copied run of words.

Shared by the embedding judge (which leaves restated lines out of its goal score, so saying the goal does not pay)
and the evaluation's signs of reward hacking (``dat.eval.parroting``).
"""

from __future__ import annotations

import re

OVERLAP = 0.3
"""A line restates a text when at least this share of its word pairs are the text's."""
COPY_SPAN = 6
"""A line copies a text when it holds this many consecutive words of it."""
_WORD = re.compile(r"[a-z0-9$%']+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def overlap(line: str, text: str) -> float:
    """The share of ``line``'s word pairs that occur in ``text`` (0 for a line of fewer than two words)."""
    mine = list(zip(*(words(line)[i:] for i in range(2)), strict=False))
    if not mine:
        return 0.0
    theirs = set(zip(*(words(text)[i:] for i in range(2)), strict=False))
    return sum(pair in theirs for pair in mine) / len(mine)


def copies(line: str, text: str, span: int = COPY_SPAN) -> bool:
    """Whether ``line`` holds ``span`` consecutive words of ``text``, in order."""
    mine = words(line)
    theirs = {tuple(g) for g in zip(*(words(text)[i:] for i in range(span)), strict=False)}
    return any(tuple(mine[i:i + span]) in theirs for i in range(len(mine) - span + 1))


def restates(line: str, text: str) -> bool:
    """Whether ``line`` restates ``text``: word-pair overlap of at least ``OVERLAP``, or a copied run."""
    return overlap(line, text) >= OVERLAP or copies(line, text)
