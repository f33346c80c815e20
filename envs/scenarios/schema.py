"""Scenario schema: characters, scenarios and tasks, with Sotopia's fields and visibility rules.

A :class:`Task` is one scenario played by one ordered pair of characters (Sotopia's
"env-agent combo"). It renders two different texts from the same data:

* ``agent_view(i)``, the system text agent ``i`` sees: the scenario, its own full profile and goal,
  the partner's background *as far as the relationship allows*, the partner's goal as "Unknown",
  never the partner's secret. The relationship gate follows Sotopia's paper-era ``get_bio``:
  stranger → nothing, know_by_name → the name, acquaintance → age, gender, occupation, pronouns and
  public info, friend / romantic / family → also personality, values description and
  decision-making style. Names are always given (Sotopia lists the participants to everyone).
* ``record(turns, steered)``, the judge's view: both full backgrounds (secrets included) and both
  goals, as :class:`dat.records.DialogueRecord`.

Goal tags. Sotopia goals carry ``<extra_info>``, ``<strategy_hint>`` and ``<clarification_hint>``
sections meant for the goal's owner and the judge only. Sotopia's renderer keeps their *text* and
drops the markup for those two viewers, and the partner sees "Unknown" instead of the whole goal. We
do the same (:func:`render_goal`): the raw goal is kept in :attr:`Scenario.agent_goals`, the rendered
text goes to the owner's view and to the judge, and nothing of it reaches the partner.

Rule checks. ``Scenario.checks`` holds optional, machine-checkable conditions per agent, read by
the rule judge (:mod:`dat.judges.rule`). Each spec is a small dict; :func:`validate_check` sums up
the format and accepts or rejects a spec with the judge's own parser.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from dat.judges.rule import parse_rule
from dat.records import DialogueRecord, Utterance

DEFAULT_LEAVE_PHRASE = "Goodbye!"
"""What an agent is told it may say to end the conversation (the environment detects it)."""

GOAL_TAGS = ("extra_info", "strategy_hint", "clarification_hint")
_TAG_RE = re.compile(r"</?(?:" + "|".join(GOAL_TAGS) + r")\s*>")
_GENDER_ADJ = {"man": "male", "woman": "female", "nonbinary": "nonbinary"}


class RelationshipType(IntEnum):
    """How well the two characters know each other (Sotopia's numbering)."""

    stranger = 0
    know_by_name = 1
    acquaintance = 2
    friend = 3
    romantic_relationship = 4
    family_member = 5


def render_goal(goal: str) -> str:
    """The goal as its owner and the judge read it: tag markup removed, tagged text kept.

    Line breaks survive (Sotopia's friend lists are one per line); runs of spaces do not.
    """
    lines = (" ".join(line.split()) for line in _TAG_RE.sub(" ", goal).splitlines())
    text = "\n".join(line for line in lines if line)
    return re.sub(r"\s+\)", ")", re.sub(r"\(\s+", "(", text))


@dataclass(frozen=True)
class AgentProfile:
    """A character (Sotopia's AgentProfile, without model bindings)."""

    pk: str
    first_name: str
    last_name: str
    age: int
    occupation: str
    gender: str
    gender_pronoun: str
    public_info: str
    big_five: str
    moral_values: tuple[str, ...]
    schwartz_personal_values: tuple[str, ...]
    personality_and_values: str
    decision_making_style: str
    secret: str

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"

    def _intro(self) -> str:
        gender = _GENDER_ADJ.get(self.gender.lower(), self.gender.lower())
        words = " ".join(w for w in (f"{self.age}-year-old", gender, self.occupation.lower()) if w)
        return f"{self.name} is a {words}. {self.gender_pronoun} pronouns. {self.public_info}".strip()

    def public_background(self, relationship: RelationshipType = RelationshipType.friend) -> str:
        """What a partner with this ``relationship`` may know; "" for a stranger. Never the secret."""
        if relationship == RelationshipType.stranger:
            return ""
        if relationship == RelationshipType.know_by_name:
            return self.name
        if relationship == RelationshipType.acquaintance:
            return self._intro()
        parts = [self._intro()]
        if self.personality_and_values:
            parts.append(f"Personality and values: {self.personality_and_values}")
        if self.decision_making_style:
            parts.append(f"Decision-making style: {self.decision_making_style.rstrip('.')}.")
        return " ".join(parts)

    def background(self) -> str:
        """The full background (own view, judge): public background, private values, secret."""
        values = ", ".join(self.moral_values + self.schwartz_personal_values)
        private = f" Values held: {values}." if values else ""
        secret = f" {self.first_name}'s secret: {self.secret}" if self.secret else ""
        return f"{self.public_background()}{private}{secret}"


@dataclass(frozen=True)
class Scenario:
    """A scenario (Sotopia's EnvironmentProfile): shared context plus one goal per agent."""

    id: str
    codename: str
    scenario: str
    agent_goals: tuple[str, str]
    relationship: RelationshipType
    source: str
    checks: tuple[dict[str, Any], ...] = ()
    category: str = ""
    """Kind of social task (negotiation, persuasion, …); empty when the source does not say."""


def validate_check(spec: Any) -> str | None:
    """Return what is wrong with a rule-check spec, or None when it is valid.

    The format belongs to the rule judge that reads it (:mod:`dat.judges.rule`, whose parser this
    calls, so the two cannot drift). In short, ``agent`` (0 or 1) is whose goal the check measures,
    ``speaker`` ("self", "partner", "any") whose lines are searched, and ``kind`` one of:

    * ``{"agent": 0, "kind": "keyword", "pattern": "deal"}``: a word or phrase (or a list, any of
      them), whole-word and case-insensitive; ``speaker`` defaults to "self";
    * ``{"agent": 0, "kind": "regex", "pattern": r"\b(2|two) days"}``: a case-insensitive regex;
    * ``{"agent": 0, "kind": "price", "at_most": 100}`` (and/or ``at_least``): the last amount of
      money mentioned ("$90", "90 dollars"); ``speaker`` defaults to "any";
    * ``{"agent": 1, "kind": "sentiment", "target": "positive"}``: mean VADER sentiment.
    """
    try:
        parse_rule(spec, "check")
    except ValueError as err:
        return str(err).removeprefix("check: ")
    return None


@dataclass(frozen=True)
class Task:
    """One scenario played by one ordered pair of characters: agent 0 gets goal 0."""

    id: str
    scenario: Scenario
    agents: tuple[AgentProfile, AgentProfile]

    @property
    def names(self) -> tuple[str, str]:
        return (self.agents[0].name, self.agents[1].name)

    @property
    def goals(self) -> tuple[str, str]:
        """Rendered goals (tag text kept): what each owner and the judge read."""
        return (render_goal(self.scenario.agent_goals[0]), render_goal(self.scenario.agent_goals[1]))

    def agent_view(self, i: int, leave_phrase: str | None = DEFAULT_LEAVE_PHRASE, wording: str = "sheet") -> str:
        """The system text agent ``i`` (0 or 1) sees, worded as ``wording`` says (``dat.dialogue.rules.
        SYSTEM_WORDINGS``: the same facts either way); ``leave_phrase=None`` omits the leave hint."""
        if i not in (0, 1):
            raise ValueError(f"agent index must be 0 or 1, got {i}")
        me, other = self.agents[i], self.agents[1 - i]
        known = other.public_background(self.scenario.relationship)
        partner = known or "Unknown"
        if wording == "sotopia":
            them = f"What you know of them: {known}" if known else "You know nothing else of them."
            text = "\n".join([
                f"Imagine you are {me.name}. {me.background()}",
                f"You are in this situation: {self.scenario.scenario}",
                f"You are talking with {other.name}. {them}",
                f"Your goal, which {other.name} does not know: {self.goals[i]}",
                f"Try to reach your goal while staying in character as {me.name}. Keep it natural, say one or two "
                "short sentences at a time, and do not repeat yourself."])
            if leave_phrase:
                text += (" Once your goal is reached, or the talk goes nowhere, you may leave by saying "
                         f'"{leave_phrase}".')
            return text
        if wording != "sheet":
            raise ValueError(f"wording={wording!r} is not one of: sheet, sotopia.")
        lines = [
            f"Scenario: {self.scenario.scenario}",
            f"Participants: {self.names[0]} and {self.names[1]}.",
            f"You are {me.name}. Your background: {me.background()}",
            f"Your goal: {self.goals[i]}",
            f"{other.name}'s background: {partner}",
            f"{other.name}'s goal: Unknown",
            f"Reply in one or two short sentences as {me.name}, in character, working toward your goal.",
        ]
        if leave_phrase:
            lines.append(f'To end the conversation, say "{leave_phrase}"')
        return "\n".join(lines)

    def record(self, turns: Iterable[Utterance], steered: int) -> DialogueRecord:
        """The judge's view of a dialogue on this task (full backgrounds, both goals, checks)."""
        if steered not in (0, 1):
            raise ValueError(f"steered must be 0 or 1 (the index of the controlled agent), got {steered}")
        return DialogueRecord(
            task_id=self.id,
            scenario=self.scenario.scenario,
            names=self.names,
            backgrounds=(self.agents[0].background(), self.agents[1].background()),
            goals=self.goals,
            turns=tuple(turns),
            steered=steered,
            checks=self.scenario.checks,
        )
