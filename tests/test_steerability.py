"""The steerability statistics find a planted action effect and report none on pure noise."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dat.action.steerability import (
    anova,
    best_actions,
    best_of_k,
    correlation_p_value,
    distinct_share,
    gate,
    is_degenerate,
    js,
    kl,
    mean_pairwise_js,
    out_of_character,
    pseudo_actions,
    same_action_correlation,
)

P, K, N = 8, 24, 2


def planted(effect: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rewards = prompt level + effect x action value + unit noise; fresh samples of the best actions."""
    rng = np.random.default_rng(seed)
    level = rng.normal(0, 3, size=(P, 1, 1))  # prompts differ a lot in level
    value = rng.normal(0, 1, size=(P, K, 1))
    rewards = level + effect * value + rng.normal(size=(P, K, N))
    best = best_actions(rewards)
    fresh = level[:, 0] + effect * value[np.arange(P), best] + rng.normal(size=(P, 16))
    return rewards, fresh


def test_planted_effect_is_detected():
    rewards, fresh = planted(effect=1.0)  # the action explains half the variance: ICC = 0.5
    corr = same_action_correlation(rewards)
    assert 0.35 < corr["corr"] < 0.65 and corr["se"] == pytest.approx(1 / math.sqrt(P * K))
    f = anova(rewards)
    assert f["F"] > 2.5 and f["df_between"] == P * (K - 1) and f["df_within"] == P * K
    assert f["between_std"] > f["within_std"] / math.sqrt(2) * 1.3
    result = best_of_k(rewards, fresh)
    assert result["advantage"] > 0.8 and result["z"] > 4
    assert correlation_p_value(rewards, permutations=200) < 0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pure_noise_shows_nothing_despite_prompt_levels(seed):
    rewards, fresh = planted(effect=0.0, seed=seed)
    corr = same_action_correlation(rewards)
    assert abs(corr["corr"]) < 3 * corr["se"]  # prompt levels alone would give corr ~0.9 without centring
    assert 0.6 < anova(rewards)["F"] < 1.6
    assert abs(best_of_k(rewards, fresh)["z"]) < 3
    assert correlation_p_value(rewards, permutations=200) > 0.01


def test_sparse_reward_correlation_is_judged_by_permutation():
    # One prompt where 2 of 16 actions hit the keyword in both samples, the others never: the
    # pooled correlation is high, and the permutation test says how surprising that is.
    rewards = np.zeros((7, 16, 2))
    rewards[3, :2] = 1.0
    assert same_action_correlation(rewards)["corr"] == pytest.approx(1.0)
    assert correlation_p_value(rewards, permutations=500) < 0.02
    rewards[3, 0, 1] = rewards[3, 1, 0] = 0.0  # one hit each for two actions: looks like chance
    rewards[3, 2, 0] = rewards[3, 3, 1] = 1.0
    assert correlation_p_value(rewards, permutations=500) > 0.2


def test_exact_values_on_a_small_table():
    rewards = np.array([[[1.0, 1.0], [0.0, 0.0], [1.0, 0.0]]])
    assert same_action_correlation(rewards)["corr"] == pytest.approx(1 / 3)
    f = anova(rewards)  # action means 1, 0, 0.5 -> between 2 * 0.5 / 2 = 0.5; within 0.5 / 3
    assert f["F"] == pytest.approx(0.5 / (0.5 / 3))
    out = best_of_k(rewards, np.array([[1.0, 0.0, 1.0, 1.0]]))
    assert out["advantage"] == pytest.approx(0.75 - 0.5)
    assert out["se"] == pytest.approx(math.sqrt(0.25 / 4 + 0.25 / 3))
    with pytest.raises(ValueError, match="prompts, actions"):
        anova(np.zeros((3, 4)))


def test_divergences():
    p = np.log(np.array([0.5, 0.5, 0.0 + 1e-300]))
    q = np.log(np.array([0.9, 0.1, 1e-300]))
    assert kl(p, p) == pytest.approx(0.0)
    assert kl(p, q) == pytest.approx(0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1))
    assert js(p, q) == pytest.approx(js(q, p)) and 0 < js(p, q) < math.log(2)
    disjoint = np.log(np.array([[1.0, 1e-300], [1e-300, 1.0]]))
    assert mean_pairwise_js(disjoint) == pytest.approx(math.log(2))
    assert pseudo_actions(np.arange(10.0)[None], 2).shape == (1, 5, 2)


def test_degenerate_replies():
    assert is_degenerate("", [])
    assert is_degenerate("?? !!", [5, 6])
    assert not is_degenerate("Yes.", [10, 11])
    assert not is_degenerate("I can offer $90 for it, final.", list(range(9)))
    assert is_degenerate("deal deal deal deal deal", [4, 4, 4, 4, 4, 9])  # one token > 40 %
    assert is_degenerate("a b a b a b", [1, 2, 1, 2, 1, 2, 1, 2, 1, 2])  # few distinct bigrams


def config_result(
    corr: float, z: float, degenerate: float = 0.0, cost: float = 0.2, split: str = "eval",
    character: float = 0.95, distinct: float = 0.93,
) -> dict:
    return {
        "split": split,
        "degenerate": degenerate,
        "fluency": {"cost": cost},
        "in_character": {"steered": character, "baseline": 0.96},
        "distinct": {"steered": distinct, "baseline": 0.95},
        "rewards": {
            "sentiment": {"corr": {"corr": corr}, "best_of_k": {"z": z}},
            "keyword": {"corr": {"corr": 0.05}, "best_of_k": {"z": 0.4}},
        },
    }


def test_gate():
    passed, reasons = gate(config_result(0.45, 3.1))
    assert passed and len(reasons) == 6 and all(r.startswith("ok") for r in reasons)
    assert not gate(config_result(0.25, 3.1))[0]
    assert not gate(config_result(0.45, 1.9))[0]
    assert not gate(config_result(0.45, 3.1, degenerate=0.03))[0]
    assert not gate(config_result(0.45, 3.1, cost=0.6))[0]
    # Moving a reward by breaking character or collapsing onto a few replies does not pass.
    assert not gate(config_result(0.45, 3.1, character=0.90))[0]
    assert not gate(config_result(0.45, 3.1, distinct=0.85))[0]
    old = config_result(0.45, 3.1)
    del old["in_character"]
    assert not gate(old)[0]
    # Where the local judge scored believability, it may not fall by more than 0.2 points.
    judged = config_result(0.45, 3.1)
    judged["believability"] = {"steered": 6.1, "baseline": 6.2}
    passed, reasons = gate(judged)
    assert passed and len(reasons) == 7 and "believability" in reasons[-2]
    judged["believability"]["steered"] = 5.9
    assert not gate(judged)[0]
    passed, reasons = gate(config_result(0.45, 3.1, split="train"))
    assert not passed and "held-out" in reasons[0]


def test_out_of_character_replies_are_flagged_by_rule():
    own, other = "Aisha Rahman", "Dmitri Volkov"
    flagged = [
        "(The conversation starts. You speak first.)",
        "Aisha Rahman's background: unknown",
        "Dmitri Volkov: I disagree with the plan.",
        "As Dmitri, I think we should wait.",
        "Aisha Rahman is going to work on the project.",
        "Your goal: get the credit you deserve.",
        "*smiles warmly* Thanks for coming.",
    ]
    kept = ["Dmitri, I led the design, and I'd like that on the slide.", "I'm glad you're here. Shall we start?",
            "Thanks, Dmitri. What do you think about Friday?"]
    assert all(out_of_character(t, own, other) for t in flagged)
    assert not any(out_of_character(t, own, other) for t in kept)


def test_distinct_share_counts_repeated_replies_per_prompt():
    assert distinct_share([["a", "b", "A "], ["x", "y", "z", "w"]]) == pytest.approx((2 / 3 + 1) / 2)
