"""Top-p (nucleus) sampling that looks at the nucleus only, as a logits processor for greedy ``generate``.

transformers samples top-p by sorting the whole vocabulary (``TopPLogitsWarper``) and then drawing
from it with ``torch.multinomial``, which makes one exponential variate per vocabulary entry. For a
49k-token vocabulary at 64 rows that sort and that draw cost about a third of a steered, sampled
generation call on a 2-core CPU (``benchmarks/decode_costs.py``). The nucleus at ``top_p = 0.9``
holds a few dozen tokens, so ``NucleusSampler`` takes the ``k`` most likely tokens (doubling ``k``
until every row's nucleus ends inside them), draws one token from each row's nucleus, and hands
``generate`` scores that make the greedy choice that token.

The law is transformers': a token is kept when the probability of the tokens more likely than it is
below ``top_p`` (so the most likely token always is), and the draw is proportional to the kept
probabilities. The kept set equals ``TopPLogitsWarper``'s except where float rounding puts a token
exactly on the edge (the two sum in opposite orders); the draws, made over the nucleus instead of
the vocabulary, differ from transformers' sampler for the same seed (``tests/test_nucleus.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers import LogitsProcessor

FIRST_LOOK = 64
"""Tokens looked at first; a row whose nucleus is wider makes the look twice as wide, until it fits."""


def nucleus(probs: Tensor, top_p: float, look: int = FIRST_LOOK) -> tuple[Tensor, Tensor]:
    """The nucleus of each row of ``probs`` ``(batch, vocab)``: the ``(batch, k)`` token ids (most likely first;
    the whole vocabulary in its order when ``top_p`` is 1) and their probabilities, zero outside the nucleus."""
    vocab = probs.shape[-1]
    if top_p >= 1:  # every token, as transformers keeps them (summing to 1 in float could drop the last)
        return torch.arange(vocab, device=probs.device).expand_as(probs), probs
    k = min(look, vocab)
    while True:
        top, ids = probs.topk(k, dim=-1)
        total = top.cumsum(-1)
        kept = total - top < top_p  # kept: the tokens more likely than it hold less than top_p
        if k == vocab or not (total[:, -1] < top_p).any():  # no token past the look is kept
            return ids, top * kept
        k = min(2 * k, vocab)


class NucleusSampler(LogitsProcessor):
    """Draw each row's next token from its top-p nucleus at ``temperature``; return scores whose only finite
    entry is that token, so greedy decoding takes it. Uses the global torch generator (seed it as for
    transformers' sampling). Float32 ``scores`` are overwritten with the result."""

    def __init__(self, temperature: float, top_p: float):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"Sampling needs temperature > 0 and 0 < top_p <= 1; got {temperature}, {top_p}.")
        self.temperature, self.top_p = temperature, top_p

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        # In place on the float32 scores generate hands over as its own copy: at a 49k vocabulary each
        # fresh vocabulary-sized tensor per step costs about as much as the arithmetic.
        probs = scores.float().div_(self.temperature)
        probs = probs.sub_(probs.logsumexp(-1, keepdim=True)).exp_()
        ids, kept = nucleus(probs, self.top_p)
        token = ids.gather(-1, torch.multinomial(kept, 1))
        return probs.fill_(-torch.inf).scatter_(-1, token, 0.0)
