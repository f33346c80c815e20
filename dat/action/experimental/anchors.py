"""Anchor prefixes (``prefix.kind=anchors``): each prefix token a softmax mixture of the embeddings of a few
chosen words. Training-free like PCA, and as unable to steer the default model reproducibly
(docs/results/steerability.md, "Action spaces that fail the gate"); kept to compare against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

ANCHOR_WORDS = (
    "wonderful", "great", "thanks", "happy", "agree", "deal", "yes", "sure",
    "terrible", "angry", "sorry", "no", "refuse", "price", "money", "please",
)
"""Default anchors: sentiment, agreement and refusal, money, politeness (16 words)."""


def anchor_basis(embedding: Tensor, words: Sequence[str], tokenizer) -> Tensor:
    """Embeddings ``(words, hidden)`` of the first token of each anchor word (with a leading space)."""
    if tokenizer is None:
        raise ValueError("prefix.kind=anchors needs the model's tokenizer to find the anchor words' tokens.")
    ids = []
    for word in words:
        tokens = tokenizer(" " + word.strip(), add_special_tokens=False)["input_ids"]
        if not word.strip() or not tokens:
            raise ValueError(f"prefix.anchors: {word!r} gives no token; use non-empty words.")
        ids.append(tokens[0])
    return embedding.detach().float().cpu()[torch.tensor(ids)]
