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

from collections.abc import Sequence

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
    entry is that token, so greedy decoding takes it. Float32 ``scores`` are overwritten with the result.

    Without ``seeds`` the draws come from the global torch generator (seed it as for transformers'
    sampling), so a row's tokens depend on the rows beside it. With one seed per row each row draws from
    a generator of its own, once per step: its tokens are those it would draw alone, whatever the batch.
    """

    def __init__(self, temperature: float, top_p: float, seeds: Sequence[int] | None = None):
        if temperature <= 0 or not 0 < top_p <= 1:
            raise ValueError(f"Sampling needs temperature > 0 and 0 < top_p <= 1; got {temperature}, {top_p}.")
        self.temperature, self.top_p = temperature, top_p
        self.seeds = None if seeds is None else [int(s) for s in seeds]
        self._generators: list[torch.Generator] | None = None

    def _draw(self, kept: Tensor) -> Tensor:
        """One token index per row of ``kept`` ``(batch, k)``, from the row generators when there are seeds.

        A row with a generator draws by inverting its cumulative distribution with one uniform variate per
        step: the draw does not depend on how many columns the batch's widest nucleus needed, and the float
        rounding by which a batched row's probabilities differ from the same row alone moves it only when
        the variate falls within that rounding of a boundary."""
        if self.seeds is None:
            return torch.multinomial(kept, 1)
        if len(self.seeds) != kept.shape[0]:
            raise ValueError(f"NucleusSampler has {len(self.seeds)} row seeds for a batch of {kept.shape[0]}.")
        if self._generators is None:  # made at the first step, on the device the scores are on
            self._generators = [torch.Generator(device=kept.device).manual_seed(s) for s in self.seeds]
        uniform = torch.cat([torch.rand(1, generator=g, device=kept.device) for g in self._generators])
        cdf = kept.double().cumsum(-1)
        index = torch.searchsorted(cdf, (uniform.double() * cdf[:, -1])[:, None], right=True)
        return index.clamp(max=kept.shape[-1] - 1)

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        # In place on the float32 scores generate hands over as its own copy: at a 49k vocabulary each
        # fresh vocabulary-sized tensor per step costs about as much as the arithmetic.
        probs = scores.float().div_(self.temperature)
        probs = probs.sub_(probs.logsumexp(-1, keepdim=True)).exp_()
        ids, kept = nucleus(probs, self.top_p)
        token = ids.gather(-1, self._draw(kept))
        return probs.fill_(-torch.inf).scatter_(-1, token, 0.0)
