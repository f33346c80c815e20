"""Readers for the two on-disk layouts of a scenario set. Both return tasks in file order.

Sotopia layout (the JSONL files of ``sotopia.database.serialization``): ``environment_profiles``,
``agent_profiles``, ``relationship_profiles`` and ``env_agent_combo_storages`` (``.jsonl``). A task
is one combo; its id is the combo id. Relationship profiles are not part of a task (Sotopia uses
them only to sample pairs) but are read and their references checked, so a broken set never loads.

Project layout (the bundled set, and any user set): ``characters.jsonl`` (AgentProfile fields),
``scenarios.jsonl`` (Scenario fields; ``relationship`` as a name or 0..5) and ``tasks.jsonl``
(``id``, ``scenario_id``, ``agent_ids``). Unknown fields are errors, so typos cannot pass.

Probe-set layout (instruction stability): ``prompts.jsonl`` and ``topics.jsonl``, read by
:mod:`envs.scenarios.probes` into self-chat tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .probes import PROMPT_FILE, TOPIC_FILE, read_probe_set
from .rows import REQUIRED, Row, ScenarioError, read_jsonl
from .schema import AgentProfile, Scenario, Task, validate_check

SOTOPIA_FILES = (
    "environment_profiles.jsonl",
    "agent_profiles.jsonl",
    "relationship_profiles.jsonl",
    "env_agent_combo_storages.jsonl",
)
PROJECT_FILES = ("characters.jsonl", "scenarios.jsonl", "tasks.jsonl")

T = TypeVar("T")


def _by_id(rows: list[Row], key: str, build: Callable[[Row], T]) -> dict[str, T]:
    """Build one object per row, keyed by its id; a repeated id is an error, never a silent overwrite."""
    built: dict[str, T] = {}
    first: dict[str, int] = {}
    for row in rows:
        pk = row.text(key)
        if pk in first:
            raise row.error(
                key, f"duplicate id {pk!r} (first on line {first[pk]})", "give every row its own id"
            )
        first[pk] = row.line
        built[pk] = build(row)
    return built


def _ref(row: Row, field: str, pk: str, known: dict[str, T], where: Path) -> T:
    if pk not in known:
        raise row.error(field, f"unknown reference {pk!r}", f"use an id defined in {where}")
    return known[pk]


def _profile(row: Row, pk_field: str, strict: bool) -> AgentProfile:
    """Sotopia rows carry every field (strict); project rows may leave the descriptive ones out."""
    text = REQUIRED if strict else ""
    texts: Any = REQUIRED if strict else ()
    return AgentProfile(
        pk=row.text(pk_field, nonempty=True),
        first_name=row.text("first_name", nonempty=True),
        last_name=row.text("last_name"),
        age=row.integer("age"),
        occupation=row.text("occupation"),
        gender=row.text("gender"),
        gender_pronoun=row.text("gender_pronoun"),
        public_info=row.text("public_info", text),
        big_five=row.text("big_five", text),
        moral_values=row.texts("moral_values", default=texts),
        schwartz_personal_values=row.texts("schwartz_personal_values", default=texts),
        personality_and_values=row.text("personality_and_values", text),
        decision_making_style=row.text("decision_making_style", text),
        secret=row.text("secret", text),
    )


def _pair(row: Row, agents: dict[str, AgentProfile], where: Path) -> tuple[AgentProfile, AgentProfile]:
    """The task's two characters (``agent_ids``): both known, and not the same one twice."""
    first, second = row.pair("agent_ids")
    if first == second:
        raise row.error("agent_ids", f"names the character {first!r} twice", "give two different characters")
    return _ref(row, "agent_ids", first, agents, where), _ref(row, "agent_ids", second, agents, where)


def _checks(row: Row) -> tuple[dict, ...]:
    checks = row.dicts("checks")
    for k, spec in enumerate(checks):
        problem = validate_check(spec)
        if problem:
            raise row.error(
                f"checks[{k}]",
                problem,
                "write the check in the rule-judge format (docs/scenarios.md, dat.judges.rule)",
            )
    return checks


def read_sotopia(folder: Path) -> list[Task]:
    """Tasks of an official Sotopia profile folder (one per env-agent combo)."""
    env_file, agent_file, rel_file, combo_file = (folder / name for name in SOTOPIA_FILES)
    agents = _by_id(read_jsonl(agent_file), "agent_id", lambda r: _profile(r, "agent_id", strict=True))

    def scenario(r: Row) -> Scenario:
        return Scenario(
            id=r.text("env_id", nonempty=True),
            codename=r.text("codename"),
            scenario=r.text("scenario", nonempty=True),
            agent_goals=r.pair("agent_goals"),
            relationship=r.relationship(),
            source=r.text("source"),
        )

    def relationship(r: Row) -> None:
        _ref(r, "agent1_id", r.text("agent1_id"), agents, agent_file)
        _ref(r, "agent2_id", r.text("agent2_id"), agents, agent_file)
        r.relationship()

    scenarios = _by_id(read_jsonl(env_file), "env_id", scenario)
    _by_id(read_jsonl(rel_file), "relationship_id", relationship)

    def task(r: Row) -> Task:
        env = _ref(r, "env_id", r.text("env_id"), scenarios, env_file)
        return Task(id=r.text("combo_id", nonempty=True), scenario=env, agents=_pair(r, agents, agent_file))

    return list(_by_id(read_jsonl(combo_file), "combo_id", task).values())


_CHARACTER_FIELDS = set(AgentProfile.__dataclass_fields__)
_SCENARIO_FIELDS = set(Scenario.__dataclass_fields__)
_TASK_FIELDS = {"id", "scenario_id", "agent_ids"}


def read_project(folder: Path) -> list[Task]:
    """Tasks of a set in the project layout (``characters``, ``scenarios``, ``tasks`` JSONL)."""
    char_file, scen_file, task_file = (folder / name for name in PROJECT_FILES)

    def character(r: Row) -> AgentProfile:
        r.reject_unknown(_CHARACTER_FIELDS)
        return _profile(r, "pk", strict=False)

    def scenario(r: Row) -> Scenario:
        r.reject_unknown(_SCENARIO_FIELDS)
        return Scenario(
            id=r.text("id", nonempty=True),
            codename=r.text("codename", r.text("id")),
            scenario=r.text("scenario", nonempty=True),
            agent_goals=r.pair("agent_goals"),
            relationship=r.relationship(),
            source=r.text("source", "custom"),
            checks=_checks(r),
            category=r.text("category", ""),
        )

    agents = _by_id(read_jsonl(char_file), "pk", character)
    scenarios = _by_id(read_jsonl(scen_file), "id", scenario)

    def task(r: Row) -> Task:
        r.reject_unknown(_TASK_FIELDS)
        env = _ref(r, "scenario_id", r.text("scenario_id"), scenarios, scen_file)
        return Task(id=r.text("id", nonempty=True), scenario=env, agents=_pair(r, agents, char_file))

    return list(_by_id(read_jsonl(task_file), "id", task).values())


def read_folder(folder: Path) -> list[Task]:
    """Detect the layout from the file names and read it (a probe set gives ``ProbeTask``s)."""
    if (folder / SOTOPIA_FILES[0]).is_file():
        return read_sotopia(folder)
    if (folder / PROJECT_FILES[1]).is_file():
        return read_project(folder)
    if (folder / PROMPT_FILE).is_file():
        return read_probe_set(folder)  # type: ignore[return-value]
    raise ScenarioError(
        folder,
        None,
        None,
        "no scenario files found",
        f"point at a folder holding {', '.join(SOTOPIA_FILES)} (Sotopia) "
        f"or {', '.join(PROJECT_FILES)} (project layout) or {PROMPT_FILE} and {TOPIC_FILE} (a probe set)",
    )
