"""The instruction-stability probe set: shipped data, schema errors naming file, line and field, tasks, split,
and the env rules that play them (a scripted opening topic, the probe question as the partner's last line)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
from dat.judges.probe import ProbeJudge, find_probe, parse_test
from dat.judges.reward import reward
from envs.scenarios import DATA_DIR, ScenarioError, load_scenarios, split_tasks
from envs.scenarios.probes import GROUPS, PAIRINGS, ProbeTask, read_prompts, read_topics
from tests.dialogue_tasks import GREEDY, NEVER

PROBES = DATA_DIR / "probes"


def test_the_shipped_set_has_forty_prompts_in_every_group_and_twenty_topics():
    prompts, topics = read_prompts(PROBES), read_topics(PROBES)
    assert len(prompts) >= 40 and len(topics) >= 20
    groups = Counter(p.group for p in prompts)
    assert set(groups) == set(GROUPS) and min(groups.values()) >= 5
    assert len({p.system for p in prompts}) == len(prompts) and len({t.text for t in topics}) == len(topics)
    for p in prompts:
        parse_test(p.test)
        assert p.question.strip() and p.system.strip()
    langs = {p.test["lang"] for p in prompts if p.group == "language"}
    assert {"fr", "es"} <= langs


def test_tasks_pair_each_prompt_with_other_prompts_and_topics():
    tasks = load_scenarios("probes")
    prompts = read_prompts(PROBES)
    assert len(tasks) == PAIRINGS * len(prompts)
    assert all(isinstance(t, ProbeTask) and t.partner.id != t.prompt.id for t in tasks)
    assert len({t.id for t in tasks}) == len(tasks)
    assert len({t.topic.id for t in tasks}) >= 20
    first = tasks[0]
    assert first.id == f"{prompts[0].id}/1" and first.partner.id == prompts[1].id
    assert first.agent_view(0, leave_phrase="Goodbye!") == prompts[0].system   # no leave hint in a self-chat
    assert first.agent_view(1) == first.partner.system
    assert first.opening_line(0) == first.topic.text
    record = first.record([], 0)
    assert find_probe(record, 0).question == prompts[0].question
    assert find_probe(record, 1).question == first.partner.question


def test_split_holds_out_whole_prompts_of_every_group():
    tasks = load_scenarios("probes")
    train, held_out = split_tasks(tasks, "train"), split_tasks(tasks, "eval")
    assert len(train) + len(held_out) == len(tasks) and len(held_out) >= 16
    assert not {t.prompt.id for t in train} & {t.prompt.id for t in held_out}
    assert {t.prompt.group for t in held_out} == set(GROUPS)
    assert [t.id for t in load_scenarios("probes:eval")] == [t.id for t in held_out]
    assert [t.id for t in load_scenarios("probes", ids=["secret_number"])] == ["secret_number/1", "secret_number/2"]


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "probes"
    shutil.copytree(PROBES, folder)
    return folder


def _edit_line(path: Path, line: int, change) -> None:
    rows = path.read_text().splitlines()
    data = json.loads(rows[line - 1])
    change(data)
    rows[line - 1] = json.dumps(data)
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("file, line, change, field, problem", [
    ("prompts.jsonl", 3, lambda d: d.update(test={"kind": "first_letter", "letter": "XY"}), "test", "one letter"),
    ("prompts.jsonl", 5, lambda d: d.update(test={"kind": "glow"}), "test", "unknown test kind"),
    ("prompts.jsonl", 4, lambda d: d.update(group="mood"), "group", "unknown group"),
    ("prompts.jsonl", 2, lambda d: d.update(system="  "), "system", "empty"),
    ("prompts.jsonl", 6, lambda d: d.pop("question"), "question", "missing"),
    ("prompts.jsonl", 7, lambda d: d.update(probe="typo"), "probe", "unknown field"),
    ("prompts.jsonl", 8, lambda d: d.update(test="lowercase"), "test", "expected an object"),
    ("prompts.jsonl", 9, lambda d: d.update(id="letter_b"), "id", "duplicate id"),
    ("topics.jsonl", 2, lambda d: d.update(text=3), "text", "expected a string"),
])
def test_a_malformed_probe_file_names_file_line_and_field(tmp_path, file, line, change, field, problem):
    folder = _copy(tmp_path)
    _edit_line(folder / file, line, change)
    with pytest.raises(ScenarioError) as err:
        load_scenarios(folder)
    assert err.value.path == str(folder / file) and err.value.line == line and err.value.field == field
    assert problem in str(err.value) and "Fix:" in str(err.value)


def test_a_set_without_topics_is_refused(tmp_path):
    folder = _copy(tmp_path)
    (folder / "topics.jsonl").unlink()
    with pytest.raises(ScenarioError, match="topics.jsonl: file not found"):
        load_scenarios(folder)


def test_the_partner_opens_with_the_topic_and_asks_the_probe_last(lm):
    task = load_scenarios("probes", ids=["code_word"])[0]
    cfg = EnvConfig(max_turns=3, sampling=GREEDY, leave_phrase=NEVER, partner_opens=True, steered=0, probe=True)
    dialogue = Dialogue.open(task, 0, True, cfg)
    plain = Dialogue.open(task, 0, True, replace(cfg, probe=False))
    lockstep = Lockstep(lm, None, cfg)
    lockstep.start([dialogue, plain], seed=0)
    for rnd in range(3):
        lockstep.step([d for d in (dialogue, plain) if not d.done], None, (rnd, 100 + rnd))
    assert dialogue.terminated and len(dialogue.turns) == 6
    assert dialogue.turns[0].text == task.topic.text and dialogue.turns[0].agent == 1
    assert dialogue.turns[4].text == task.prompt.question and dialogue.turns[4].agent == 1
    assert dialogue.turns[5].agent == 0
    assert plain.turns[0].text == task.topic.text and plain.turns[4].text != task.prompt.question
    assert [t.text for t in plain.turns[:4]] == [t.text for t in dialogue.turns[:4]]  # the same dialogue until then
    judgement = ProbeJudge()([dialogue.record()])[0]
    assert judgement.ok and reward(judgement, 0) in (0.0, 1.0)
    assert not ProbeJudge()([plain.record()])[0].ok


def test_probe_mode_needs_the_partner_to_open_and_tasks_with_a_probe():
    with pytest.raises(ValueError, match="env.probe=true needs env.partner_opens=true"):
        EnvConfig(probe=True, partner_opens="random").validate()
    bundled = load_scenarios("bundled")[0]
    with pytest.raises(ValueError, match="needs tasks with a probe question"):
        Dialogue.open(bundled, 0, True, EnvConfig(probe=True, partner_opens=True))
