"""The in-place repetition penalty is transformers' rule over the generated tokens."""

from __future__ import annotations

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from dat.lm.penalty import RepetitionPenalty


@pytest.mark.parametrize("penalty", [1.2, 0.8])
def test_the_penalty_is_transformers_rule_applied_in_place(penalty):
    torch.manual_seed(0)
    scores = torch.randn(4, 50)
    generated = torch.tensor([[3, 3, 7], [0, 49, 12], [5, 6, 5], [1, 2, 3]])  # repeats are penalised once
    before = scores.clone()
    expected = RepetitionPenaltyLogitsProcessor(penalty)(generated, before.clone())
    ours = RepetitionPenalty(penalty)(generated, scores)
    assert ours.data_ptr() == scores.data_ptr()
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, generated, True)
    assert torch.all(ours[seen] != before[seen]) and torch.equal(ours[~seen], before[~seen])


def test_nothing_generated_yet_leaves_the_scores_and_bad_penalties_are_refused():
    scores = torch.randn(2, 9)
    assert torch.equal(RepetitionPenalty(1.3)(torch.zeros(2, 0, dtype=torch.long), scores.clone()), scores)
    with pytest.raises(ValueError, match="> 0"):
        RepetitionPenalty(0.0)
