"""Instruction-stability probe sets: system prompts with a probe question and a test, and opening topics.

A probe set is a folder of two JSONL files (the shipped one: ``data/probes/``, loaded as ``"probes"``):

* ``prompts.jsonl``: one system prompt per line, ``{"id", "group", "system", "question", "test"}``.
  ``group`` is one of :data:`GROUPS`; ``system`` is the whole system prompt, holding one instruction a
  rule can check; ``question`` is the probe question whose answer shows whether the instruction still
  holds; ``test`` scores that answer in [0, 1] (:mod:`dat.judges.probe`, whose parser validates it).
* ``topics.jsonl``: ``{"id", "text"}``, what the partner opens a self-chat with.

Tasks. A :class:`ProbeTask` is a self-chat between two system-prompted agents: agent 0 reads the
prompt under test, agent 1 (the partner) another prompt of the set, and the partner opens with a
topic. Each prompt gets :data:`PAIRINGS` tasks, ``<prompt id>/1`` and ``<prompt id>/2``; task k of
prompt i (0-based, in file order, n prompts, m topics) pairs it with the partner prompt
``(i + 1 + 7 k) mod n`` (the next one when that is the prompt itself) and the topic ``(i + 11 k) mod m``.
The rule depends only on the file order, so a task id names the same pairing on every machine.

A task renders what the env needs (:class:`dat.dialogue.rules.DialogueTask`): ``agent_view(i)`` is the
bare system prompt of agent i (nothing about leaving: a self-chat has no goal to finish), the
partner's opening line is the topic (``opening_line``), ``probe_question(i)`` is agent i's probe,
and ``record`` carries both agents' probes as checks for ``judge=probe``. ``task.scenario`` is the
prompt under test, so the train / eval split and ``ids=`` select whole prompts: held-out prompts
are never trained on, whatever partner or topic they meet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dat.judges.probe import parse_test, probe_check
from dat.records import DialogueRecord, Utterance

from .rows import Row, ScenarioError, read_jsonl

PROMPT_FILE, TOPIC_FILE = "prompts.jsonl", "topics.jsonl"
GROUPS = ("pattern", "persona", "memory", "language", "tone")
"""Kinds of instruction: a surface pattern, persona facts, a remembered secret, a language, a tone."""
PAIRINGS = 2
"""Tasks per prompt (each with another partner prompt and topic)."""
_PROMPT_FIELDS = {"id", "group", "system", "question", "test"}
_TOPIC_FIELDS = {"id", "text"}


@dataclass(frozen=True)
class ProbePrompt:
    """A system prompt under test, its probe question and the test of the answer (a ``dat.judges.probe`` dict)."""

    id: str
    group: str
    system: str
    question: str
    test: dict[str, Any]


@dataclass(frozen=True)
class Topic:
    """An opening line for the partner of a self-chat."""

    id: str
    text: str


@dataclass(frozen=True)
class ProbeTask:
    """A self-chat: agent 0 reads ``prompt``, agent 1 reads ``partner``, and the partner opens with ``topic``."""

    id: str
    prompt: ProbePrompt
    partner: ProbePrompt
    topic: Topic

    @property
    def scenario(self) -> ProbePrompt:
        """The prompt under test: what the split and ``ids=`` select by (its ``id``)."""
        return self.prompt

    @property
    def prompts(self) -> tuple[ProbePrompt, ProbePrompt]:
        return (self.prompt, self.partner)

    def agent_view(self, i: int, leave_phrase: str | None = None, wording: str = "sheet") -> str:
        """Agent ``i``'s system prompt, as written, whatever ``wording`` (the prompt is what a probe set studies;
        ``leave_phrase`` is not mentioned)."""
        if i not in (0, 1):
            raise ValueError(f"agent index must be 0 or 1, got {i}")
        return self.prompts[i].system

    def opening_line(self, steered: int) -> str:
        """What the partner of the steered agent opens with: the topic."""
        return self.topic.text

    def probe_question(self, agent: int) -> str:
        return self.prompts[agent].question

    def record(self, turns: Iterable[Utterance], steered: int) -> DialogueRecord:
        """The judge's view: both system prompts, the topic and both agents' probes (``judge=probe``)."""
        if steered not in (0, 1):
            raise ValueError(f"steered must be 0 or 1 (the index of the controlled agent), got {steered}")
        return DialogueRecord(
            task_id=self.id,
            scenario=f"A conversation opened with: {self.topic.text}",
            names=(self.prompt.id, self.partner.id),
            backgrounds=(self.prompt.system, self.partner.system),
            goals=(self.prompt.system, self.partner.system),
            turns=tuple(turns),
            steered=steered,
            checks=tuple(probe_check(p.question, p.test, agent=i) for i, p in enumerate(self.prompts)),
        )


def _prompt(row: Row) -> ProbePrompt:
    row.reject_unknown(_PROMPT_FIELDS)
    group = row.text("group", nonempty=True)
    if group not in GROUPS:
        raise row.error("group", f"unknown group {group!r}", f"use one of {list(GROUPS)}")
    test = row.mapping("test")
    try:
        parse_test(test, "test")
    except ValueError as err:
        raise row.error("test", str(err).removeprefix("test: "),
                        "write the test in the probe format (docs/stability.md, dat.judges.probe)") from None
    return ProbePrompt(id=row.text("id", nonempty=True), group=group, system=row.text("system", nonempty=True).strip(),
                       question=row.text("question", nonempty=True).strip(), test=dict(test))


def _topic(row: Row) -> Topic:
    row.reject_unknown(_TOPIC_FIELDS)
    return Topic(id=row.text("id", nonempty=True), text=row.text("text", nonempty=True).strip())


def _unique(rows: list[Row], build) -> list:
    built, first = [], {}
    for row in rows:
        item = build(row)
        if item.id in first:
            raise row.error("id", f"duplicate id {item.id!r} (first on line {first[item.id]})",
                            "give every row its own id")
        first[item.id] = row.line
        built.append(item)
    return built


def read_prompts(folder: Path) -> list[ProbePrompt]:
    """The prompts of a probe-set folder, validated (``ScenarioError`` names file, line and field)."""
    prompts = _unique(read_jsonl(folder / PROMPT_FILE), _prompt)
    if len(prompts) < 2:
        raise ScenarioError(folder / PROMPT_FILE, None, None, "a probe set needs at least two prompts",
                            "add prompts: each task pairs a prompt with another one as its partner")
    return prompts


def read_topics(folder: Path) -> list[Topic]:
    return _unique(read_jsonl(folder / TOPIC_FILE), _topic)


def pair_tasks(prompts: list[ProbePrompt], topics: list[Topic], pairings: int = PAIRINGS) -> list[ProbeTask]:
    """``pairings`` tasks per prompt, paired by the rule in the module docstring."""
    n, m = len(prompts), len(topics)
    tasks = []
    for i, prompt in enumerate(prompts):
        for k in range(pairings):
            j = (i + 1 + 7 * k) % n
            j = (j + 1) % n if j == i else j
            tasks.append(ProbeTask(f"{prompt.id}/{k + 1}", prompt, prompts[j], topics[(i + 11 * k) % m]))
    return tasks


def read_probe_set(folder: Path) -> list[ProbeTask]:
    """The tasks of a probe-set folder (``prompts.jsonl`` and ``topics.jsonl``)."""
    return pair_tasks(read_prompts(folder), read_topics(folder))
