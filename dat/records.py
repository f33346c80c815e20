"""Plain records that cross module boundaries: a finished (or running) dialogue as the judge sees it.

They live in ``dat`` so that judges, the rollout runner and the buffer share one vocabulary without
importing ``envs``. The environment builds a :class:`DialogueRecord` from its scenario.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Utterance:
    """One turn of the dialogue: which agent (0 or 1) said what."""

    agent: int
    text: str


@dataclass(frozen=True)
class DialogueRecord:
    """Everything a judge needs to score a dialogue, and nothing tied to a model.

    ``backgrounds`` are the rendered profiles (name, age, occupation, personality, secret …) of the
    two agents; the judge sees both, unlike the agents themselves. ``checks`` are optional rule
    specifications carried by the scenario (see ``dat.judges.rule``).
    """

    task_id: str
    scenario: str
    names: tuple[str, str]
    backgrounds: tuple[str, str]
    goals: tuple[str, str]
    turns: tuple[Utterance, ...]
    steered: int
    checks: tuple[dict[str, Any], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DialogueRecord:
        return cls(
            task_id=str(data["task_id"]),
            scenario=data["scenario"],
            names=tuple(data["names"]),
            backgrounds=tuple(data["backgrounds"]),
            goals=tuple(data["goals"]),
            turns=tuple(Utterance(int(t["agent"]), t["text"]) for t in data["turns"]),
            steered=int(data["steered"]),
            checks=tuple(data.get("checks", ())),
        )

    def transcript(self) -> str:
        """The dialogue as numbered lines, the way Sotopia's judge reads it."""
        return "\n".join(
            f"Turn #{i}: {self.names[u.agent]} said: \"{u.text}\"" for i, u in enumerate(self.turns)
        )


def clean_utterance(text: str) -> str:
    """The first non-empty line of a generation, stripped."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
