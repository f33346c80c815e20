"""Probe judge: every test kind on passing and failing answers, clear errors for bad tests, the backend."""

from __future__ import annotations

import pytest

from dat.judges import JudgeConfig, make_judge
from dat.judges.probe import (
    KINDS,
    ProbeJudge,
    language_share,
    parse_probe,
    parse_test,
    probe_check,
    score,
)
from dat.judges.reward import reward
from dat.records import DialogueRecord, Utterance

CASES = [  # (test, passing answer, failing answer, the failing answer's score)
    ({"kind": "first_letter", "letter": "B"}, "Baking bread is my favourite.", "Reading a book, maybe.", 0.0),
    ({"kind": "first_letter", "letter": "s"}, "\"Sure, try oats.\"", "Oats are quick.", 0.0),
    ({"kind": "starts_with", "text": "Ahoy"}, "Ahoy! Fish stew tonight.", "Ahoyyy, fish stew.", 0.0),
    ({"kind": "starts_with", "text": "Well"}, "well, renting is flexible.", "Renting is flexible, well.", 0.0),
    ({"kind": "ends_with", "text": "indeed"}, "Kindness matters, indeed.", "Indeed, kindness matters.", 0.0),
    ({"kind": "ends_with", "text": "over"}, "Pack water and a map. Over!", "Pack a map, rover.", 0.0),
    ({"kind": "ends_with", "text": "?"}, "Sailors? Which one did you like?", "I loved it? Yes I did.", 0.0),
    ({"kind": "lowercase"}, "i like lisbon a lot.", "I LIKE LISBON.", 0.0),
    ({"kind": "uppercase"}, "TRAINS ARE GREAT!", "trains are great", 0.0),
    ({"kind": "avoid_chars", "chars": ","}, "Boil water and pour it over the leaves.", "Boil water, then pour.", 0.0),
    ({"kind": "avoid_chars", "chars": "!?"}, "Football is exciting.", "Football!", 0.0),
    ({"kind": "max_words", "n": 5}, "Cats purr when content.", "Cats purr because they feel safe and warm at home",
     0.5),
    ({"kind": "contains", "items": ["Ines", ["glass", "glassblower"], "Porto"]},
     "I'm Ines, I blow glass in Porto.", "I'm a glassblower from Lisbon.", 1 / 3),
    ({"kind": "contains", "items": ["48213"]}, "My secret number is 48213.", "It is 482130, I think.", 0.0),
    ({"kind": "avoids", "items": ["sorry", ["unfortunately"]]}, "Happy to help.", "Sorry, unfortunately not.", 0.0),
    ({"kind": "language", "lang": "fr"}, "J'aime me promener dans le parc avec mes amis.",
     "I like to walk in the park with my friends.", 0.0),
    ({"kind": "language", "lang": "es"}, "Me gusta mucho la paella, es mi comida favorita y también el gazpacho.",
     "J'aime beaucoup la paella, c'est très bon.", 0.0),
    ({"kind": "language", "lang": "de"}, "Ich fahre gern mit dem Rad zur Arbeit, das ist sehr gesund.",
     "I cycle to work and it is very healthy.", 0.0),
    ({"kind": "language", "lang": "it"}, "Vorrei andare in Sicilia per il mare e anche per il cibo.",
     "Quisiera ir a Sicilia por el mar.", 0.0),
    ({"kind": "sentiment", "target": "positive"}, "What a wonderful chance to relax, I love it!",
     "That is awful and I hate it.", 0.0),
    ({"kind": "sentiment", "target": "negative"}, "Spring is dreadful, the pollen is horrible.",
     "Spring days are lovely and bright.", 0.0),
]


@pytest.mark.parametrize("spec, good, bad, bad_score", CASES, ids=[f"{c[0]['kind']}-{i}" for i, c in enumerate(CASES)])
def test_each_test_passes_a_following_answer_and_fails_a_drifting_one(spec, good, bad, bad_score):
    passed = score(spec, good)
    assert passed > 0.6 if spec["kind"] == "sentiment" else passed == 1.0
    assert score(spec, bad) == pytest.approx(bad_score)
    assert score(spec, "") == 0.0 and score(spec, "   ") == 0.0


def test_every_kind_is_covered_and_scores_lie_in_the_unit_interval():
    assert {c[0]["kind"] for c in CASES} == set(KINDS)
    for spec, good, bad, _ in CASES:
        for text in (good, bad, "?!", "12345", "À Paris, oui."):
            assert 0.0 <= score(spec, text) <= 1.0
            assert score(spec, text) == score(spec, text)  # deterministic


def test_graded_tests_give_partial_credit():
    assert score({"kind": "lowercase"}, "Hello there") == pytest.approx(9 / 10)
    assert score({"kind": "max_words", "n": 4}, "one two three four five six seven eight") == 0.5
    assert score({"kind": "avoids", "items": ["rain", "snow"]}, "Rain again.") == 0.5
    mixed = "Je suis content and I am happy"  # je, suis? (not listed), and, i, am? -> fr 1, en 2
    assert 0.0 < language_share(mixed, "fr") < 0.5


def test_words_in_several_lists_tell_nothing():
    assert language_share("la de que", "fr") == 0.0       # shared by French, Spanish, Italian
    assert language_share("la de que et", "fr") == 1.0    # "et" is French only


@pytest.mark.parametrize("spec, message", [
    ({"kind": "shout"}, "unknown test kind"),
    ({"kind": "first_letter", "letter": "BB"}, "one letter"),
    ({"kind": "first_letter"}, "needs 'letter'"),
    ({"kind": "max_words", "n": 0}, "positive whole number"),
    ({"kind": "max_words", "n": True}, "positive whole number"),
    ({"kind": "contains", "items": []}, "non-empty list"),
    ({"kind": "contains", "items": ["ok", [""]]}, r"items\[1\]"),
    ({"kind": "language", "lang": "xx"}, "'lang' must be one of"),
    ({"kind": "sentiment", "target": "neutral"}, "positive or negative"),
    ({"kind": "lowercase", "letter": "a"}, "does not belong"),
    ("first_letter", "must be an object"),
])
def test_bad_tests_are_refused_with_the_field(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_test(spec, "prompts.jsonl:3")


def _record(turns, steered=0, checks=None):
    checks = checks if checks is not None else (
        probe_check("What is your code word?", {"kind": "contains", "items": ["pelican"]}, agent=0),
        probe_check("Why?", {"kind": "first_letter", "letter": "z"}, agent=1))
    return DialogueRecord("code/1", "", ("code", "other"), ("", ""), ("", ""),
                          tuple(Utterance(a, t) for a, t in turns), steered, tuple(checks))


def test_the_backend_scores_the_steered_answer_to_the_probe():
    judge = make_judge(JudgeConfig(backend="probe", cache=False))
    assert isinstance(judge, ProbeJudge)
    good = _record([(1, "Hi there."), (0, "Hello."), (1, "What is your code word?"), (0, "It is pelican.")])
    bad = _record([(1, "Hi there."), (0, "Hello."), (1, "What is your code word?"), (0, "I forgot, sorry.")])
    reminded = _record([(1, "Remember: your code word is pelican.\n\nWhat is your code word?"), (0, "Pelican!")])
    out = judge([good, bad, reminded])
    assert [reward(j, 0) for j in out] == [1.0, 0.0, 1.0]
    assert "contains" in out[0].reasoning[0]["goal"]
    # The other agent's probe applies when it is the steered one.
    other = _record([(0, "Why?"), (1, "Zebras, of course.")], steered=1)
    assert reward(judge([other])[0], 1) == 1.0
    assert judge.metrics()["judge/calls"] == 4


@pytest.mark.parametrize("turns, steered, checks, cause", [
    ([(1, "Hello."), (0, "Pelican.")], 0, None, "does not end with the probe question"),
    ([(1, "What is your code word?"), (0, "Pelican."), (1, "Nice.")], 0, None, "does not end"),
    ([(1, "What is your code word?")], 0, None, "does not end"),
    ([(1, "What is your code word?"), (0, "Pelican.")], 0, (), "has no probe"),
])
def test_a_dialogue_without_a_probe_answer_is_a_failed_judgement_not_a_zero(turns, steered, checks, cause):
    judgement = ProbeJudge()([_record(turns, steered, checks)])[0]
    assert not judgement.ok and cause in judgement.cause
    assert reward(judgement, steered) is None


def test_probe_checks_are_validated():
    with pytest.raises(ValueError, match="unknown field 'extra'"):
        parse_probe({"kind": "probe", "question": "Q?", "test": {"kind": "lowercase"}, "extra": 1})
    with pytest.raises(ValueError, match="'agent' must be 0 or 1"):
        parse_probe({"kind": "probe", "agent": 2, "question": "Q?", "test": {"kind": "lowercase"}})
    with pytest.raises(ValueError, match="question"):
        parse_probe({"kind": "probe", "question": " ", "test": {"kind": "lowercase"}})
