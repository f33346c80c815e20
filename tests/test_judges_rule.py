"""Rule judge: keyword, regex, price and VADER sentiment checks, and clear errors for bad rules."""

from __future__ import annotations

import pytest

from dat.judges.rule import RuleJudge, last_amount, parse_rule
from dat.records import DialogueRecord, Utterance

LINES = ("Hi Bob! Would you take $80 for the bike?",        # Ann
         "No, 150 dollars is my final price.",              # Bob
         "How about $95? I am happy to pay cash today.",     # Ann
         "Alright, deal at $95. Thanks, that's a great offer!")  # Bob


def make_record(checks=(), steered=0, turns=LINES) -> DialogueRecord:
    return DialogueRecord(
        task_id="bike", scenario="A used bike sale.", names=("Ann", "Bob"), backgrounds=("", ""),
        goals=("Buy the bike for at most $100.", "Sell the bike for at least $150."),
        turns=tuple(Utterance(i % 2, t) for i, t in enumerate(turns)), steered=steered, checks=tuple(checks))


@pytest.mark.parametrize("rule, satisfied", [
    ({"agent": 0, "kind": "keyword", "pattern": "cash"}, True),
    ({"agent": 0, "kind": "keyword", "pattern": "deal"}, False),                      # Ann never says it
    ({"agent": 0, "kind": "keyword", "pattern": "deal", "speaker": "partner"}, True),
    ({"agent": 0, "kind": "keyword", "pattern": "bi"}, False),                       # whole words only
    ({"agent": 0, "kind": "keyword", "pattern": ["refund", "CASH today"]}, True),
    ({"agent": 0, "kind": "regex", "pattern": r"take \$\d+"}, True),
    ({"agent": 0, "kind": "regex", "pattern": r"^no\b"}, False),
    ({"agent": 0, "kind": "price", "at_most": 100}, True),                           # last price: $95
    ({"agent": 0, "kind": "price", "at_most": 90}, False),
    ({"agent": 1, "kind": "price", "at_least": 150}, False),
    ({"agent": 0, "kind": "price", "at_least": 90, "at_most": 100}, True),
    ({"agent": 0, "kind": "price", "at_most": 100, "speaker": "self"}, True),
    ({"agent": 1, "kind": "sentiment", "target": "positive"}, True),
    ({"agent": 0, "kind": "sentiment", "target": "negative"}, False),
    ({"agent": 0, "kind": "sentiment", "target": "positive"}, True),
    ({"agent": 0, "kind": "sentiment", "target": "neutral"}, False),
])
def test_each_rule_kind(rule, satisfied):
    checks = [rule] if rule["agent"] == 0 else [rule, {"agent": 0, "kind": "keyword", "pattern": "cash"}]
    [j] = RuleJudge(agents="both")([make_record(checks)])
    assert j.ok and j.scores[rule["agent"]].goal == (10.0 if satisfied else 0.0)


def test_goal_is_ten_times_the_fraction_satisfied_with_reasons():
    checks = [{"kind": "keyword", "pattern": "cash"}, {"kind": "price", "at_most": 90},
              {"kind": "sentiment", "target": "positive"}]
    [j] = RuleJudge()([make_record(checks)])
    assert j.scores[0].goal == pytest.approx(10 * 2 / 3) and j.scores[1].goal is None
    assert j.scores[0].available() == {"goal": pytest.approx(20 / 3)}
    assert j.reasoning[0]["goal"].startswith("2/3 rules satisfied")
    assert "price <= 90: no (last price 95)" in j.reasoning[0]["goal"]


def test_config_checks_apply_to_every_dialogue_and_absent_agent_means_steered():
    judge = RuleJudge(checks=[{"kind": "keyword", "pattern": "deal", "speaker": "partner"}])
    ann, bob = judge([make_record(steered=0), make_record(steered=1)])
    assert ann.scores[0].goal == 10.0 and bob.scores[1].goal == 0.0  # Ann never says "deal"


def test_steered_agent_without_rules_is_a_failed_judgement():
    [j] = RuleJudge()([make_record([{"agent": 1, "kind": "keyword", "pattern": "deal"}])])
    assert j.status == "failed" and j.cause == "no rule checks apply to agent 0 (Ann)"


def test_no_price_mentioned_fails_the_rule():
    [j] = RuleJudge()([make_record([{"kind": "price", "at_most": 100}], turns=("Hello", "Hi"))])
    assert j.scores[0].goal == 0.0 and "no price mentioned" in j.reasoning[0]["goal"]


def test_amount_extraction():
    assert last_amount(["I'd pay $1,200.50 or 900 dollars", "fine, 950 USD"]) == 950
    assert last_amount(["a 10 minute walk"]) is None


@pytest.mark.parametrize("spec, message", [
    ({"kind": "vibes"}, "unknown rule kind 'vibes'; use one of keyword, regex, price, sentiment"),
    ({"kind": "keyword"}, "needs 'pattern'"),
    ({"kind": "regex", "pattern": "("}, "invalid regex"),
    ({"kind": "price"}, "needs 'at_most' and/or 'at_least'"),
    ({"kind": "price", "at_most": "100"}, "'at_most' must be a number"),
    ({"kind": "sentiment", "target": "happy"}, "needs 'target'"),
    ({"kind": "keyword", "pattern": "x", "agent": 2}, "'agent' must be 0 or 1"),
    ({"kind": "keyword", "pattern": "x", "patern": "y"}, "unknown field"),
])
def test_bad_rules_are_configuration_errors_naming_the_rule(spec, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_rule(spec, "here")
    with pytest.raises(ValueError, match=r"record 'bike' checks\[1\]"):
        RuleJudge()([make_record([{"kind": "keyword", "pattern": "cash"}, spec])])


def test_metrics_count_calls_and_failures():
    judge = RuleJudge()
    judge([make_record([{"kind": "keyword", "pattern": "cash"}]), make_record()])
    m = judge.metrics()
    assert (m["judge/calls"], m["judge/failures"], m["judge/cache_hits"]) == (2, 1, 0)


def test_graded_sentiment_gives_partial_credit_and_scenario_checks_can_be_ignored():
    from dat.judges.rule import RuleJudge as Judge
    from dat.records import DialogueRecord as Record
    from dat.records import Utterance as Line

    def record(text: str) -> Record:
        return Record("t", "s", ("A", "B"), ("", ""), ("g", "h"), (Line(0, text), Line(1, "ok")), steered=0,
                      checks=({"kind": "keyword", "pattern": "never-said"},))

    graded = [{"kind": "sentiment", "target": "positive", "graded": True}]
    only = Judge(graded, scenario_checks=False)
    happy, sad = only([record("I love this, wonderful, thank you!"), record("This is awful and I hate it.")])
    assert 7.5 < happy.scores[0].goal <= 10.0 and 0.0 <= sad.scores[0].goal < 2.5
    both = Judge(graded)([record("I love this, wonderful, thank you!")])[0]
    assert both.scores[0].goal == pytest.approx(happy.scores[0].goal / 2)  # the unmet keyword counts too
    with pytest.raises(ValueError, match="graded"):
        Judge([{"kind": "keyword", "pattern": "x", "graded": True}])
