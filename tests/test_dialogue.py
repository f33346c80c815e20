"""Dialogue rules shared by the env and the runner: chats per agent, utterance cleaning, setup draws."""

from __future__ import annotations

import numpy as np
import pytest

from dat.dialogue.rules import Dialogue, EnvConfig, agent_messages, clean_utterance, draw_setup, says_leave
from dat.records import Utterance
from tests.dialogue_tasks import make_tasks


def test_clean_utterance_keeps_the_first_non_empty_line():
    assert clean_utterance("\n  Hi there!  \nBea: no way") == "Hi there!"
    assert clean_utterance("   \n\n") == ""
    assert clean_utterance("one line") == "one line"


def test_leave_is_a_case_insensitive_substring():
    assert says_leave("Fine. *Left The Conversation*", "left the conversation")
    assert not says_leave("I will leave soon", "left the conversation")


def test_each_agent_reads_its_own_chat():
    turns = [Utterance(1, "Hello"), Utterance(0, "Hi"), Utterance(1, "Deal?")]
    assert agent_messages("S0", turns, 0, "CUE") == [
        {"role": "system", "content": "S0"}, {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Deal?"}]
    assert agent_messages("S1", turns, 1, "CUE") == [
        {"role": "system", "content": "S1"}, {"role": "user", "content": "CUE"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Deal?"}]
    assert agent_messages("S", [], 0, "CUE")[-1] == {"role": "user", "content": "CUE"}
    assert agent_messages("S", [], 0, "") == [{"role": "system", "content": "S"}]


def test_views_hide_the_partners_goal_and_secret_and_name_the_leave_phrase():
    task = make_tasks(1)[0]
    d = Dialogue.open(task, steered=1, partner_opens=True, cfg=EnvConfig(leave_phrase="I must go"))
    d.turns.append(Utterance(0, "Hi"))
    for agent in (0, 1):
        text = "\n".join(m["content"] for m in d.view(agent))
        assert f"GOAL-0-{agent}" in text and f"SECRET-0-{agent}" in text and '"I must go"' in text
        assert f"GOAL-0-{1 - agent}" not in text and f"SECRET-0-{1 - agent}" not in text
    record = d.record()
    assert record.steered == 1 and record.turns == (Utterance(0, "Hi"),)
    assert "SECRET-0-0" in record.backgrounds[0]


def test_setup_draws_follow_the_seed_and_the_config():
    a = [draw_setup(np.random.default_rng(s), 5, EnvConfig()) for s in range(30)]
    assert a == [draw_setup(np.random.default_rng(s), 5, EnvConfig()) for s in range(30)]
    assert {x[0] for x in a} == set(range(5)) and {x[1] for x in a} == {0, 1}
    assert {x[2] for x in a} == {True, False}
    cfg = EnvConfig(steered=1, partner_opens=False)
    fixed = [draw_setup(np.random.default_rng(s), 5, cfg) for s in range(30)]
    assert [x[0] for x in fixed] == [x[0] for x in a]  # fixing the sides does not shift the task draws
    assert {(x[1], x[2]) for x in fixed} == {(1, False)}


@pytest.mark.parametrize("field,value", [("max_turns", 0), ("steered", "left"), ("partner_opens", 2),
                                         ("leave_phrase", "  "), ("state_pool", "max")])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EnvConfig(**{field: value}).validate()
