"""Judgement model, score ranges, JSON round trip and the reward weighting."""

from __future__ import annotations

import json

import pytest

from dat.judges.config import RewardWeights
from dat.judges.dimensions import DIMENSIONS, RANGES, normalise
from dat.judges.judgement import AgentScores, Judgement, Usage
from dat.judges.reward import reward

FULL = {"believability": 9, "relationship": -1, "knowledge": 4, "secret": 0, "social_rules": 0,
        "financial_and_material_benefits": 1, "goal": 7}


def judgement(**steered) -> Judgement:
    return Judgement(scores=(AgentScores(**steered), AgentScores(goal=2)), backend="api", model="m",
                     reasoning=({"goal": "got most of it"}, {}), usage=Usage(10, 5, 0.5, 1), version="v1")


def test_ranges_are_sotopias():
    assert RANGES == {"goal": (0, 10), "believability": (0, 10), "knowledge": (0, 10),
                      "relationship": (-5, 5), "financial_and_material_benefits": (-5, 5),
                      "secret": (-10, 0), "social_rules": (-10, 0)}
    assert set(DIMENSIONS) == set(RANGES)
    assert normalise("secret", -10) == 0 and normalise("relationship", 5) == 1


@pytest.mark.parametrize("dim, bad", [("goal", 11), ("goal", -0.5), ("secret", 1), ("relationship", -6),
                                      ("social_rules", float("nan")), ("knowledge", True)])
def test_out_of_range_scores_are_rejected(dim, bad):
    with pytest.raises(ValueError, match=dim):
        AgentScores(**{dim: bad})


def test_unscored_dimensions_are_absent_not_zero():
    s = AgentScores(goal=7)
    assert s.secret is None and s.available() == {"goal": 7} and s.overall() == 7
    assert AgentScores().overall() is None


def test_json_round_trip_keeps_everything():
    j = judgement(**FULL)
    data = json.loads(json.dumps(j.to_dict()))
    assert Judgement.from_dict(data) == j
    assert data["overall"][0] == pytest.approx(20 / 7) and data["scores"][1] == {"goal": 2}
    failed = Judgement.failed("timeout", "api", "m", "v1", Usage(retries=3))
    assert Judgement.from_dict(failed.to_dict()) == failed and not failed.ok


def test_failed_needs_a_cause_and_status_is_checked():
    with pytest.raises(ValueError, match="cause"):
        Judgement(status="failed")
    with pytest.raises(ValueError, match="status"):
        Judgement(status="maybe")


def test_default_reward_is_steered_goal_over_ten():
    assert reward(judgement(**FULL), 0) == pytest.approx(0.7)
    assert reward(judgement(**FULL), 1) == pytest.approx(0.2)


def test_overall_reward_is_sotopias_mean_raw_or_normalised():
    j = judgement(**FULL)
    assert reward(j, 0, RewardWeights(overall=True, normalise=False)) == pytest.approx(20 / 7)
    # Normalised: each dimension onto [0, 1] by its range, then the mean (= (overall - mean low) / 10).
    lows = sum(RANGES[d][0] for d in DIMENSIONS) / 7
    assert reward(j, 0, RewardWeights(overall=True)) == pytest.approx((20 / 7 - lows) / 10)


def test_weighted_reward_and_missing_dimensions():
    j = judgement(goal=8, relationship=3, knowledge=2)
    w = RewardWeights(weights={"goal": 2.0, "relationship": 1.0, "knowledge": 1.0})
    assert reward(j, 0, w) == pytest.approx((2 * 0.8 + 0.8 + 0.2) / 4)
    assert reward(j, 0, RewardWeights(weights={"goal": 1.0, "relationship": 1.0}, normalise=False)) == 5.5
    # A weighted dimension the judge did not score is left out; if none is scored there is no reward.
    assert reward(j, 0, RewardWeights(weights={"goal": 1.0, "secret": 3.0})) == pytest.approx(0.8)
    assert reward(j, 0, RewardWeights(weights={"secret": 1.0})) is None


def test_failed_judgement_has_no_reward_never_zero():
    assert reward(Judgement.failed("timeout", "api", "m"), 0) is None
