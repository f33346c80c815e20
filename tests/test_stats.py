"""Paired bootstrap and sign-flip tests: they find real effects, stay quiet on null ones, respect pairing
and scenario clusters, and count failed judgements instead of scoring them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dat.eval.stats import bootstrap_ci, paired_difference, summarize_conditions


def test_bootstrap_ci_edge_cases_and_values() -> None:
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    mean, low, high = bootstrap_ci([2.5])
    assert mean == 2.5 and math.isnan(low) and math.isnan(high)
    assert bootstrap_ci([3.0, 3.0, 3.0]) == (3.0, 3.0, 3.0)
    assert bootstrap_ci([1.0, np.nan, 3.0])[0] == 2.0  # NaN = failed judgement, ignored
    x = np.random.default_rng(0).normal(1.0, 2.0, 400)
    mean, low, high = bootstrap_ci(x, seed=3)
    half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    assert low < mean < high
    assert low == pytest.approx(mean - half, abs=0.05) and high == pytest.approx(mean + half, abs=0.05)
    assert bootstrap_ci(x, seed=3) == (mean, low, high)  # same seed, same interval
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(x, level=95)


def test_known_difference_is_detected() -> None:
    rng = np.random.default_rng(0)
    baseline = rng.normal(5.0, 1.0, 40)
    treated = baseline + 0.5 + rng.normal(0.0, 0.3, 40)
    r = paired_difference(treated, baseline)
    assert r.ci_low > 0.0 and r.p_value < 0.01
    assert r.mean_diff == pytest.approx(float(np.mean(treated - baseline)))
    assert r.ci_low < 0.5 < r.ci_high  # covers the true shift
    assert (r.n_pairs, r.n_groups, r.n_dropped) == (40, 40, 0)
    assert r.p_value == pytest.approx(1 / 10_001)  # Monte Carlo with +1: never exactly 0


def test_null_difference_is_not_detected() -> None:
    rng = np.random.default_rng(2)
    baseline = rng.normal(5.0, 1.0, 40)
    treated = baseline + rng.normal(0.0, 0.3, 40)
    r = paired_difference(treated, baseline)
    assert r.p_value > 0.05 and r.ci_low < 0.0 < r.ci_high


def test_false_positive_rate_near_nominal() -> None:
    p_values, covered = [], 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        baseline = rng.normal(5.0, 1.0, 20)
        treated = baseline + rng.normal(0.0, 0.3, 20)
        r = paired_difference(treated, baseline, n_boot=1000, n_perm=1000, seed=seed)
        p_values.append(r.p_value)
        covered += r.ci_low <= 0.0 <= r.ci_high
    rate = float(np.mean(np.array(p_values) < 0.05))
    assert 0.01 <= rate <= 0.10
    assert covered >= 85  # percentile bootstrap under-covers a little at n=20
    assert 0.35 < float(np.mean(p_values)) < 0.65  # p-values roughly uniform under the null


def test_exact_enumeration_p_value() -> None:
    # all three differences positive: only the all-plus and all-minus patterns are as extreme -> 2/8
    r = paired_difference([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert r.p_value == 0.25 and r.mean_diff == 2.0
    assert paired_difference([1.0, 1.0], [1.0, 1.0]).p_value == 1.0


def test_pairing_is_respected() -> None:
    # large per-pair offsets shared by both arms hide a 0.5 shift from any unpaired comparison
    rng = np.random.default_rng(1)
    offset = rng.normal(0.0, 5.0, 30)
    baseline = offset + rng.normal(0.0, 0.2, 30)
    treated = offset + 0.5 + rng.normal(0.0, 0.2, 30)
    paired = paired_difference(treated, baseline)
    assert paired.ci_low > 0.0 and paired.p_value < 0.01
    _, t_low, t_high = bootstrap_ci(treated)
    _, b_low, b_high = bootstrap_ci(baseline)
    assert t_low < b_high and b_low < t_high  # the unpaired intervals overlap widely
    unpaired = paired_difference(treated, rng.permutation(baseline))  # pairing destroyed
    assert unpaired.p_value > 0.05 and unpaired.ci_low < 0.0 < unpaired.ci_high


def test_groups_resample_scenarios_not_episodes() -> None:
    # 4 scenarios x 10 episodes; the effect varies by scenario, so episodes within one are not independent
    rng = np.random.default_rng(2)
    groups = np.repeat(["s0", "s1", "s2", "s3"], 10)
    effect = rng.normal(0.0, 1.0, 4)[np.repeat(np.arange(4), 10)]
    baseline = rng.normal(5.0, 1.0, 40)
    treated = baseline + 0.3 + effect + rng.normal(0.0, 0.1, 40)
    naive = paired_difference(treated, baseline)
    clustered = paired_difference(treated, baseline, groups=groups)
    assert clustered.mean_diff == pytest.approx(naive.mean_diff)
    assert (clustered.n_groups, clustered.n_pairs) == (4, 40)
    assert clustered.ci_high - clustered.ci_low > 2 * (naive.ci_high - naive.ci_low)
    assert naive.p_value < 0.01 and clustered.p_value > 0.1  # 4 groups: exact test, 16 sign patterns
    assert clustered.p_value * 16 == pytest.approx(round(clustered.p_value * 16))


def test_nans_dropped_and_counted() -> None:
    baseline = np.array([1.0, np.nan, 2.0, 3.0, np.nan, 4.0, 5.0, 6.0])
    treated = np.array([2.0, 3.0, np.nan, 4.0, np.nan, 5.0, 6.0, 7.5])
    r = paired_difference(treated, baseline)
    assert (r.n_pairs, r.n_dropped) == (5, 3)
    assert r.mean_diff == pytest.approx((1 + 1 + 1 + 1 + 1.5) / 5)
    empty = paired_difference([np.nan], [1.0])
    assert empty.n_pairs == 0 and empty.n_dropped == 1 and math.isnan(empty.p_value)


def test_misaligned_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="aligned"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="group labels"):
        paired_difference([1.0, 2.0], [1.0, 2.0], groups=["a"])
    with pytest.raises(ValueError, match="baseline condition 'unsteered'"):
        summarize_conditions({"steered": {"goal": [1.0]}})
    with pytest.raises(ValueError, match="same scenarios and seeds"):
        summarize_conditions({"unsteered": {"goal": [1.0, 2.0]}, "steered": {"goal": [1.0]}})


def test_summarize_conditions_structure_and_values() -> None:
    rng = np.random.default_rng(4)
    base_goal = rng.normal(5.0, 1.0, 24)
    scores = {
        "steered": {"goal": base_goal + 1.0 + rng.normal(0, 0.2, 24), "believability": np.full(24, 8.0)},
        "unsteered": {"goal": base_goal.copy(), "believability": np.full(24, 8.0)},
    }
    scores["steered"]["goal"][[0, 5]] = np.nan  # two failed judgements
    groups = [f"scenario-{i % 6}" for i in range(24)]
    s = summarize_conditions(scores, groups=groups, n_boot=2000, n_perm=2000)
    assert s["conditions"] == ["unsteered", "steered"] and s["dimensions"] == ["goal", "believability"]
    assert (s["baseline"], s["unit"], s["level"]) == ("unsteered", "scenario", 0.95)
    g = s["results"]["steered"]["goal"]
    assert (g["n"], g["n_failed"], g["n_groups"]) == (22, 2, 6)
    assert g["mean"] == pytest.approx(np.nanmean(scores["steered"]["goal"]))
    assert g["diff"]["n_dropped"] == 2 and g["diff"]["n_groups"] == 6
    assert g["diff"]["ci_low"] > 0.5 and g["diff"]["p_value"] == pytest.approx(2 / 64)  # 6 groups, exact
    assert s["results"]["unsteered"]["goal"]["diff"] is None
    b = s["results"]["steered"]["believability"]
    assert (b["mean"], b["low"], b["high"]) == (8.0, 8.0, 8.0) and b["diff"]["p_value"] == 1.0
