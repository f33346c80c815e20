"""Scenario schema, visibility rules, loaders (official Sotopia files and the bundled set), split."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from dat.judges.rule import RuleJudge
from dat.records import Utterance
from envs.scenarios import (
    DATA_DIR,
    SOTOPIA_ENV_VAR,
    AgentProfile,
    RelationshipType,
    Scenario,
    ScenarioError,
    Task,
    load_scenarios,
    render_goal,
    split_tasks,
    validate_check,
)

# The official files: $DAT_SOTOPIA_DIR, else ../shared/data/sotopia beside the project.
SOTOPIA = Path(os.environ.get("DAT_SOTOPIA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "sotopia")
needs_sotopia = pytest.mark.skipif(
    not (SOTOPIA / "profiles").is_dir(), reason=f"official Sotopia data not found at {SOTOPIA} (set DAT_SOTOPIA_DIR)"
)
Edit = Callable[[str], str]
HARD_CODENAMES = {
    "revenge_plot",
    "game_winning",
    "share_stuff",
    "donate_funds",
    "craigslist_bargains_00000",
    "craigslist_bargains_00002",
    "craigslist_bargains_00003",
    "craigslist_bargains_00007",
    "join_trip",
    "share_blanket",
    "unwelcome_guest",
    "sleep_arrangement",
    "divide_items",
    "sell_item",
}


def _profile(**kw: object) -> AgentProfile:
    base: dict = dict(
        pk="p1",
        first_name="Ada",
        last_name="Stone",
        age=30,
        occupation="Pilot",
        gender="Woman",
        gender_pronoun="She/her",
        public_info="Ada flies cargo planes.",
        big_five="",
        moral_values=("Care",),
        schwartz_personal_values=("Security",),
        personality_and_values="Ada is calm.",
        decision_making_style="Careful",
        secret="She cannot swim.",
    )
    base.update(kw)
    return AgentProfile(**base)


@pytest.fixture(scope="module")
def official() -> list[Task]:
    if not (SOTOPIA / "profiles").is_dir():
        pytest.skip("official Sotopia data not present")
    return load_scenarios("sotopia", root=SOTOPIA)


@pytest.fixture(scope="module")
def bundled() -> list[Task]:
    return load_scenarios("bundled")


# ---------------------------------------------------------------- schema and rendering


def test_background_rendering_is_pinned() -> None:
    ada = _profile()
    assert ada.name == "Ada Stone"
    intro = "Ada Stone is a 30-year-old female pilot. She/her pronouns. Ada flies cargo planes."
    assert ada.public_background(RelationshipType.stranger) == ""
    assert ada.public_background(RelationshipType.know_by_name) == "Ada Stone"
    assert ada.public_background(RelationshipType.acquaintance) == intro
    friend = f"{intro} Personality and values: Ada is calm. Decision-making style: Careful."
    for rel in (
        RelationshipType.friend,
        RelationshipType.romantic_relationship,
        RelationshipType.family_member,
    ):
        assert ada.public_background(rel) == friend
    assert ada.public_background() == friend
    assert ada.background() == f"{friend} Values held: Care, Security. Ada's secret: She cannot swim."


def test_render_goal_keeps_tagged_text_and_drops_markup() -> None:
    goal = "Sell it (<extra_info>Extra information: you need  cash.</extra_info>) "
    goal += "<strategy_hint>Smile</strategy_hint>"
    assert render_goal(goal) == "Sell it (Extra information: you need cash.) Smile"
    assert render_goal("Line one\n<extra_info> A: x \n B: y</extra_info>") == "Line one\nA: x\nB: y"


def _task(relationship: RelationshipType) -> Task:
    scenario = Scenario(
        id="s",
        codename="s",
        scenario="A bike is for sale.",
        relationship=relationship,
        agent_goals=("Buy it for $100 or less <extra_info>Budget $120</extra_info>", "Sell it high"),
        source="test",
        checks=({"agent": 0, "kind": "price", "at_most": 100},),
    )
    bob = _profile(
        pk="p2",
        first_name="Bob",
        last_name="Reed",
        gender="Man",
        gender_pronoun="He/him",
        public_info="Bob fixes boats.",
        personality_and_values="Bob is loud.",
        secret="He owes money.",
    )
    return Task(id="t1", scenario=scenario, agents=(_profile(), bob))


def test_agent_view_follows_relationship_gate() -> None:
    views = {rel: _task(rel).agent_view(0) for rel in RelationshipType}
    assert "Bob Reed's background: Unknown" in views[RelationshipType.stranger]
    assert "Bob Reed's background: Bob Reed\n" in views[RelationshipType.know_by_name]
    assert "Bob fixes boats." in views[RelationshipType.acquaintance]
    assert "Bob is loud." not in views[RelationshipType.acquaintance]
    assert "Bob is loud." in views[RelationshipType.friend]
    view = views[RelationshipType.friend]
    assert "Your goal: Buy it for $100 or less Budget $120" in view
    assert "Bob Reed's goal: Unknown" in view and "Sell it high" not in view and "He owes money" not in view
    assert "She cannot swim." in view  # own secret is visible to oneself
    assert "one or two short sentences as Ada Stone" in view
    assert view.endswith('say "Goodbye!"')
    assert _task(RelationshipType.friend).agent_view(1, leave_phrase="[leave]").endswith('say "[leave]"')
    assert "To end" not in _task(RelationshipType.friend).agent_view(1, leave_phrase=None)
    with pytest.raises(ValueError):
        _task(RelationshipType.friend).agent_view(2)


def test_every_system_wording_tells_the_same_facts_and_no_more() -> None:
    from dat.dialogue.rules import SYSTEM_WORDINGS, EnvConfig

    for rel in (RelationshipType.stranger, RelationshipType.friend):
        task = _task(rel)
        sheet = task.agent_view(0)
        for wording in SYSTEM_WORDINGS:
            view = task.agent_view(0, wording=wording)
            assert "Buy it for $100 or less Budget $120" in view and "She cannot swim." in view
            assert "Sell it high" not in view and "He owes money" not in view  # the partner's goal and secret
            assert ("Bob is loud." in view) == ("Bob is loud." in sheet)  # what the relationship lets through
            assert view.endswith('"Goodbye!".') or view.endswith('say "Goodbye!"')
    assert task.agent_view(0, wording="sotopia").startswith("Imagine you are Ada Stone.")
    with pytest.raises(ValueError, match="wording='prose'"):
        task.agent_view(0, wording="prose")
    with pytest.raises(ValueError, match="env.system_wording='prose' must be one of sheet, sotopia"):
        EnvConfig(system_wording="prose").validate()


def test_record_is_the_judge_view() -> None:
    task = _task(RelationshipType.stranger)
    rec = task.record([Utterance(0, "Hi, $90?"), Utterance(1, "No.")], steered=0)
    assert rec.task_id == "t1" and rec.names == ("Ada Stone", "Bob Reed") and rec.steered == 0
    assert rec.backgrounds == (task.agents[0].background(), task.agents[1].background())
    assert "He owes money." in rec.backgrounds[1]
    assert rec.goals == ("Buy it for $100 or less Budget $120", "Sell it high")
    assert rec.checks == ({"agent": 0, "kind": "price", "at_most": 100},)
    assert rec.transcript() == 'Turn #0: Ada Stone said: "Hi, $90?"\nTurn #1: Bob Reed said: "No."'
    with pytest.raises(ValueError):
        task.record([], steered=2)


@pytest.mark.parametrize(
    "spec, valid",
    [
        ({"agent": 0, "kind": "keyword", "pattern": ["deal", "agreed"], "speaker": "partner"}, True),
        ({"agent": 1, "kind": "regex", "pattern": r"\b(2|two) days"}, True),
        ({"agent": 0, "kind": "price", "at_most": 100, "at_least": 50.5}, True),
        ({"agent": 1, "kind": "sentiment", "target": "positive"}, True),
        ({"agent": 2, "kind": "keyword", "pattern": "x"}, False),
        ({"agent": 0, "kind": "smile"}, False),
        ({"agent": 0, "kind": "regex", "pattern": "("}, False),
        ({"agent": 0, "kind": "keyword", "pattern": "x", "speaker": "judge"}, False),
        ({"agent": 0, "kind": "price"}, False),
        ({"agent": 0, "kind": "price", "at_most": "100"}, False),
        ({"agent": 0, "kind": "keyword", "pattern": "x", "words": []}, False),
        ("deal", False),
    ],
)
def test_validate_check_uses_the_rule_judge_format(spec: object, valid: bool) -> None:
    problem = validate_check(spec)
    assert (problem is None) == valid and (valid or isinstance(problem, str) and problem)


def test_bundled_checks_score_with_the_rule_judge(bundled: list[Task]) -> None:
    task = next(t for t in bundled if t.id == "bike_sale/1")
    deal = [Utterance(0, "Would you take $100 for it?"), Utterance(1, "Make it 105 dollars and it's yours.")]
    judgement = RuleJudge(agents="both")([task.record(deal, steered=0)])[0]
    assert (judgement.scores[0].goal, judgement.scores[1].goal) == (10.0, 10.0)
    greedy = [Utterance(0, "I can pay $80."), Utterance(1, "No, $140 is my lowest price.")]
    judgement = RuleJudge(agents="both")([task.record(greedy, steered=0)])[0]
    assert (judgement.scores[0].goal, judgement.scores[1].goal) == (0.0, 10.0)


# ---------------------------------------------------------------- official Sotopia data


@needs_sotopia
def test_official_set_has_450_tasks_keyed_by_combo(official: list[Task]) -> None:
    combos = [json.loads(line) for line in (SOTOPIA / "profiles" / "env_agent_combo_storages.jsonl").open()]
    assert len(official) == 450 and len({t.scenario.id for t in official}) == 90
    assert [t.id for t in official] == [c["combo_id"] for c in combos]
    assert all(
        [a.pk for a in t.agents] == c["agent_ids"] and t.scenario.id == c["env_id"]
        for t, c in zip(official, combos, strict=True)
    )
    assert {t.scenario.relationship for t in official} == set(RelationshipType) - {
        RelationshipType.family_member
    }


@needs_sotopia
def test_hard_list_selects_70_tasks(official: list[Task], monkeypatch: pytest.MonkeyPatch) -> None:
    hard = load_scenarios("sotopia-hard", root=SOTOPIA)
    assert len(hard) == 70 and {t.scenario.codename for t in hard} == HARD_CODENAMES
    from_file = load_scenarios("sotopia", root=SOTOPIA, ids=f"{SOTOPIA}/env_ids/env_ids.txt#SOTOPIA-HARD")
    assert [t.id for t in from_file] == [t.id for t in hard]
    assert (
        len(
            load_scenarios(
                "sotopia", root=SOTOPIA / "profiles", ids=f"{SOTOPIA}/env_ids/env_ids.txt#SOTOPIA-ALL"
            )
        )
        == 450
    )
    with pytest.raises(ScenarioError, match="sections"):
        load_scenarios("sotopia", root=SOTOPIA, ids=SOTOPIA / "env_ids" / "env_ids.txt")
    scen = official[7].scenario.id
    assert [t.id for t in load_scenarios("sotopia", root=SOTOPIA, ids=[scen])] == [
        t.id for t in official if t.scenario.id == scen
    ]
    assert [t.id for t in load_scenarios("sotopia", root=SOTOPIA, ids=[official[3].id])] == [official[3].id]
    monkeypatch.setenv(SOTOPIA_ENV_VAR, str(SOTOPIA))
    assert len(load_scenarios("sotopia-hard:eval")) == len(split_tasks(hard, "eval"))
    monkeypatch.delenv(SOTOPIA_ENV_VAR)
    with pytest.raises(ScenarioError, match=SOTOPIA_ENV_VAR):
        load_scenarios("sotopia")


def test_unknown_id_in_id_file_names_file_and_line(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# my list\nbike_sale\n'no_such_scenario', sofa_sale\n")
    with pytest.raises(ScenarioError) as err:
        load_scenarios("bundled", ids=ids)
    assert err.value.path == str(ids) and err.value.line == 3 and "no_such_scenario" in str(err.value)
    ids.write_text("bike_sale, sofa_sale/2\n")
    assert [t.id for t in load_scenarios("bundled", ids=ids)] == ["bike_sale/1", "bike_sale/2", "sofa_sale/2"]


def _assert_private(tasks: list[Task]) -> None:
    for task in tasks:
        for i in (0, 1):
            view, j = task.agent_view(i), 1 - i
            assert task.agents[i].secret in view and task.goals[i] in view
            assert task.agents[j].secret not in view, task.id
            if (
                task.scenario.agent_goals[j] != task.scenario.agent_goals[i]
            ):  # two official scenarios share goals
                assert task.scenario.agent_goals[j] not in view and task.goals[j] not in view, task.id
            assert f"{task.agents[j].name}'s goal: Unknown" in view


@needs_sotopia
def test_official_views_never_leak_partner_goal_or_secret(official: list[Task]) -> None:
    _assert_private(official)


def test_bundled_views_never_leak_partner_goal_or_secret(bundled: list[Task]) -> None:
    _assert_private(bundled)


# ---------------------------------------------------------------- bundled set and split


def test_bundled_set_is_varied_and_checkable(bundled: list[Task]) -> None:
    scenarios = {t.scenario.id: t.scenario for t in bundled}
    assert len(bundled) >= 40 and len(scenarios) >= 20
    assert {s.category for s in scenarios.values()} == {
        "negotiation",
        "persuasion",
        "collaboration",
        "information",
        "conflict",
    }
    assert len({s.relationship for s in scenarios.values()}) == 6
    assert sum(bool(s.checks) for s in scenarios.values()) >= 0.75 * len(scenarios)
    assert all(validate_check(c) is None for s in scenarios.values() for c in s.checks)
    assert all(len(g) <= 160 for t in bundled for g in t.goals)
    assert len({a.pk for t in bundled for a in t.agents}) >= 16


@needs_sotopia
def test_bundled_text_is_original(bundled: list[Task], official: list[Task]) -> None:
    theirs = {t.scenario.scenario for t in official} | {g for t in official for g in t.scenario.agent_goals}
    theirs |= {a.name for t in official for a in t.agents}
    ours = {t.scenario.scenario for t in bundled} | {g for t in bundled for g in t.scenario.agent_goals}
    assert not ours & theirs and not {a.name for t in bundled for a in t.agents} & theirs


def test_split_is_deterministic_disjoint_and_by_scenario(bundled: list[Task]) -> None:
    train, evals = split_tasks(bundled, "train"), split_tasks(bundled, "eval")
    assert sorted({t.scenario.id for t in evals}) == [
        "band_rehearsal",
        "crosswalk_petition",
        "guitar_sale",
        "meeting_day",
        "moving_day",
        "new_job_tips",
        "project_credit",
        "rent_increase",
        "room_rent",
        "web_design_fee",
        "wedding_cake",
    ]
    assert len(train) == 34 and len(evals) == 22
    assert not {t.scenario.id for t in train} & {t.scenario.id for t in evals}
    assert sorted(t.id for t in train + evals) == sorted(t.id for t in bundled)
    assert [t.id for t in load_scenarios("bundled:eval")] == [t.id for t in evals]
    assert [t.id for t in load_scenarios("bundled:train")] == [t.id for t in train]
    with pytest.raises(ValueError):
        split_tasks(bundled, "test")


def test_the_held_out_bundled_tasks_have_the_training_tasks_kinds(bundled: list[Task]) -> None:
    """Held-out tasks that lack a kind the planner trained on (a price to hold) cannot show whether it chooses by
    the task: every category and check kind is on both sides, and price tasks weigh about the same on each."""
    sides = {split: split_tasks(bundled, split) for split in ("train", "eval")}
    categories = {split: {t.scenario.category for t in tasks} for split, tasks in sides.items()}
    checks = {split: {c["kind"] for t in tasks for c in t.scenario.checks} for split, tasks in sides.items()}
    price = {split: sum(any(c["kind"] == "price" for c in t.scenario.checks) for t in tasks) / len(tasks)
             for split, tasks in sides.items()}
    assert categories["train"] == categories["eval"]
    assert checks["eval"] >= checks["train"] - {"sentiment"}  # a sentiment check stays a training-only kind
    assert abs(price["train"] - price["eval"]) <= 0.15, price  # 0.35 and 0.45


# ---------------------------------------------------------------- malformed input


def _copy_bundled(tmp_path: Path) -> Path:
    folder = tmp_path / "set"
    shutil.copytree(DATA_DIR, folder, ignore=shutil.ignore_patterns("*.txt"))
    return folder


def _edit_line(path: Path, line: int, edit: Edit) -> None:
    lines = path.read_text().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"))  # \udcff: a stray byte


def _mutate(key: str, value: object = None, drop: bool = False) -> Edit:
    """An edit that changes (or drops) one field of a JSONL line."""

    def edit(text: str) -> str:
        row = json.loads(text)
        if drop:
            del row[key]
        else:
            row[key] = value
        return json.dumps(row)

    return edit


@pytest.mark.parametrize(
    "file, line, edit, field, words",
    [
        ("scenarios.jsonl", 3, lambda s: s[:-5], None, "invalid JSON"),
        ("scenarios.jsonl", 2, _mutate("scenario", drop=True), "scenario", "missing"),
        ("characters.jsonl", 4, _mutate("age", "41"), "age", "expected an integer"),
        ("scenarios.jsonl", 5, _mutate("agent_goals", ["only one"]), "agent_goals", "exactly 2"),
        ("scenarios.jsonl", 1, _mutate("relationship", "cousin"), "relationship", "unknown relationship"),
        (
            "scenarios.jsonl",
            6,
            _mutate("checks", [{"agent": 0, "kind": "price"}]),
            "checks[0]",
            "at_most",
        ),
        ("scenarios.jsonl", 2, _mutate("goal", "typo"), "goal", "unknown field"),
        (
            "tasks.jsonl",
            7,
            _mutate("agent_ids", ["maya_lindqvist", "nobody"]),
            "agent_ids",
            "unknown reference",
        ),
        ("tasks.jsonl", 9, _mutate("scenario_id", "nowhere"), "scenario_id", "unknown reference"),
        ("tasks.jsonl", 2, _mutate("id", "bike_sale/1"), "id", "duplicate id"),
        ("scenarios.jsonl", 4, _mutate("scenario", "  "), "scenario", "empty"),
        ("scenarios.jsonl", 4, _mutate("agent_goals", ["Sell it.", ""]), "agent_goals", "entry 2 is empty"),
        ("characters.jsonl", 3, _mutate("first_name", ""), "first_name", "empty"),
        ("tasks.jsonl", 5, _mutate("agent_ids", ["maya_lindqvist", "maya_lindqvist"]), "agent_ids", "twice"),
        ("tasks.jsonl", 6, lambda s: s.replace('"', '"\udcff', 1), None, "not UTF-8"),
    ],
)
def test_project_layout_errors_name_file_line_field(
    tmp_path: Path, file: str, line: int, edit: Edit, field: str | None, words: str
) -> None:
    folder = _copy_bundled(tmp_path)
    _edit_line(folder / file, line, edit)
    with pytest.raises(ScenarioError) as err:
        load_scenarios(folder)
    message = str(err.value)
    assert (err.value.path, err.value.line, err.value.field) == (str(folder / file), line, field)
    assert f"{folder / file}, line {line}" in message and words in message and "Fix:" in message
    if field:
        assert f"field '{field}'" in message


@needs_sotopia
@pytest.mark.parametrize(
    "file, line, edit, field, words",
    [
        ("agent_profiles.jsonl", 2, lambda s: "{" + s, None, "invalid JSON"),
        ("environment_profiles.jsonl", 3, _mutate("agent_goals", drop=True), "agent_goals", "missing"),
        ("agent_profiles.jsonl", 5, _mutate("age", "29"), "age", "expected an integer"),
        ("agent_profiles.jsonl", 6, _mutate("moral_values", "Care"), "moral_values", "list of strings"),
        ("env_agent_combo_storages.jsonl", 10, _mutate("env_id", "01XXX"), "env_id", "unknown reference"),
        ("relationship_profiles.jsonl", 4, _mutate("agent2_id", "01YYY"), "agent2_id", "unknown reference"),
    ],
)
def test_sotopia_layout_errors_name_file_line_field(
    tmp_path: Path, file: str, line: int, edit: Edit, field: str | None, words: str
) -> None:
    folder = tmp_path / "profiles"
    shutil.copytree(SOTOPIA / "profiles", folder)
    (folder / file).chmod(0o644)
    _edit_line(folder / file, line, edit)
    with pytest.raises(ScenarioError) as err:
        load_scenarios("sotopia", root=tmp_path)
    assert (err.value.path, err.value.line, err.value.field) == (str(folder / file), line, field)
    assert words in str(err.value)


def test_an_empty_file_is_named_not_read_as_no_tasks(tmp_path: Path) -> None:
    folder = _copy_bundled(tmp_path)
    (folder / "tasks.jsonl").write_text("\n")
    with pytest.raises(ScenarioError, match=r"tasks.jsonl: the file holds no rows"):
        load_scenarios(folder)


def test_unknown_name_and_empty_folder_explain_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="bundled"):
        load_scenarios("no-such-set")
    with pytest.raises(ScenarioError, match="characters.jsonl"):
        load_scenarios(tmp_path)
