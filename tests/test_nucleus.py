"""Top-p sampling over the nucleus only keeps transformers' nucleus and draws by its law."""

from __future__ import annotations

import pytest
import torch
from transformers import TopPLogitsWarper

from dat.lm.nucleus import FIRST_LOOK, NucleusSampler, nucleus


def kept_like_transformers(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    return torch.isfinite(TopPLogitsWarper(top_p)(None, scores))


@pytest.mark.parametrize("spread", [0.3, 3.0, 30.0])  # flat rows need a look wider than FIRST_LOOK
def test_the_nucleus_is_the_one_transformers_keeps(spread):
    torch.manual_seed(0)
    scores = torch.randn(16, 5000, dtype=torch.float64) * spread  # float64: no ties or edge rounding
    probs = scores.softmax(-1)
    for top_p in (0.5, 0.9, 0.99):
        ids, kept = nucleus(probs, top_p)
        ours = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, ids, kept > 0)
        assert torch.equal(ours, kept_like_transformers(scores, top_p))
        assert torch.all(probs.gather(-1, ids) >= kept)  # kept probabilities are the model's own
    ids, kept = nucleus(probs, 1.0)  # top_p 1 keeps every token, however the float sum rounds
    assert torch.equal(probs.gather(-1, ids), kept) and torch.all(kept_like_transformers(scores, 1.0))
    ids, kept = nucleus(torch.full((2, 3 * FIRST_LOOK), 1 / (3 * FIRST_LOOK)), 0.9)  # a nucleus wider than the look
    assert ids.shape[1] == 3 * FIRST_LOOK and torch.all((kept > 0).sum(-1) > 2 * FIRST_LOOK)


def test_draws_follow_the_renormalised_nucleus_and_never_leave_it():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.06, 0.04])  # top_p 0.85 keeps the first three
    scores = probs.log().expand(30_000, -1).clone()
    torch.manual_seed(1)
    out = NucleusSampler(temperature=1.0, top_p=0.85)(None, scores)
    assert torch.all(torch.isfinite(out).sum(-1) == 1)  # greedy decoding takes exactly the drawn token
    counts = torch.bincount(out.argmax(-1), minlength=5).double()
    expected = torch.tensor([0.4, 0.3, 0.2, 0.0, 0.0]) / 0.9 * 30_000
    assert counts[3:].sum() == 0
    assert torch.all((counts - expected).abs()[:3] < 4 * expected[:3].sqrt())  # within four standard deviations


def test_temperature_sharpens_and_the_draw_is_seeded():
    scores = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(4000, -1).clone()

    def draws(temperature, seed):
        torch.manual_seed(seed)
        return NucleusSampler(temperature, top_p=1.0)(None, scores.clone()).argmax(-1)  # it writes in place

    assert torch.equal(draws(1.0, 5), draws(1.0, 5)) and not torch.equal(draws(1.0, 5), draws(1.0, 6))
    assert (draws(0.3, 5) == 0).float().mean() > (draws(1.0, 5) == 0).float().mean() + 0.2
    assert 0 < (draws(1.0, 5) == 3).float().mean() < 0.1  # top_p 1.0 keeps every token


def test_row_seeds_give_each_row_its_own_draws_whatever_the_batch():
    torch.manual_seed(0)
    logits = [torch.randn(3, 50) for _ in range(6)]  # six decoding steps of a 3-row batch

    def tokens(seeds, rows):
        sampler = NucleusSampler(1.0, 0.95, seeds)
        return torch.stack([sampler(None, step[rows].clone()).argmax(-1) for step in logits], 1)

    batch = tokens([7, 8, 9], [0, 1, 2])
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(tokens([8], [1]), batch[1:2]) and torch.equal(tokens([9, 7], [2, 0]), batch[[2, 0]])
    assert not torch.equal(tokens([1, 2, 3], [0, 1, 2]), batch)
    with pytest.raises(ValueError, match="3 row seeds for a batch of 2"):
        NucleusSampler(1.0, 0.9, [1, 2, 3])(None, torch.randn(2, 50))


def test_impossible_settings_are_refused():
    with pytest.raises(ValueError, match="temperature > 0"):
        NucleusSampler(0.0, 0.9)
    with pytest.raises(ValueError, match="top_p"):
        NucleusSampler(0.7, 0.0)
