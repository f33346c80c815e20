"""What a judge returns for one dialogue: per-agent scores, the reasoning, who judged, and whether it worked.

A dimension a backend does not score is ``None``, never 0, and a judge that could not score a dialogue
returns ``status="failed"`` with the cause: a failure must never look like a bad dialogue to the learner.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dat.judges.dimensions import DIMENSIONS, RANGES

STATUSES = ("ok", "failed")


@dataclass(frozen=True)
class AgentScores:
    """One agent's seven scores; each is checked against its Sotopia range on construction.

    >>> AgentScores(goal=7).available()
    {'goal': 7}
    """

    believability: float | None = None
    relationship: float | None = None
    knowledge: float | None = None
    secret: float | None = None
    social_rules: float | None = None
    financial_and_material_benefits: float | None = None
    goal: float | None = None

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"score {name}={value!r} is not a finite number")
            low, high = RANGES[name]
            if not low <= value <= high:
                raise ValueError(f"score {name}={value} is outside its range {low}..{high}")

    def get(self, name: str) -> float | None:
        return getattr(self, name)

    def available(self) -> dict[str, float]:
        """The dimensions this agent was scored on, in Sotopia's order."""
        return {name: v for name in DIMENSIONS if (v := getattr(self, name)) is not None}

    def overall(self) -> float | None:
        """Sotopia's overall score: the plain mean of the available dimensions (None if none)."""
        values = list(self.available().values())
        return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Usage:
    """The cost of producing one judgement (zero when it came from the cache, apart from ``cached``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    retries: int = 0
    cached: bool = False


@dataclass(frozen=True)
class Judgement:
    """The verdict on one dialogue.

    ``scores[i]`` are agent ``i``'s scores (0 and 1 as in ``DialogueRecord.names``); ``reasoning[i]`` maps
    a dimension to the judge's explanation when the backend gives one.

    >>> j = Judgement(scores=(AgentScores(goal=8), AgentScores()), backend="rule", model="rules")
    >>> j.ok, j.scores[0].goal, Judgement.from_dict(j.to_dict()) == j
    (True, 8, True)
    """

    scores: tuple[AgentScores, AgentScores] = (AgentScores(), AgentScores())
    backend: str = ""
    model: str = ""
    status: str = "ok"
    cause: str | None = None
    reasoning: tuple[dict[str, str], dict[str, str]] = field(default_factory=lambda: ({}, {}))
    usage: Usage = field(default_factory=Usage)
    version: str = ""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"judgement status {self.status!r} must be one of {STATUSES}")
        if self.status == "failed" and not self.cause:
            raise ValueError("a failed judgement needs a cause")
        if len(self.scores) != 2 or len(self.reasoning) != 2:
            raise ValueError("a judgement holds exactly two agents' scores and reasoning")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def failed(cls, cause: str, backend: str, model: str, version: str = "", usage: Usage | None = None):
        """A judgement that carries no scores, only why it could not be made."""
        return cls(backend=backend, model=model, status="failed", cause=cause, version=version,
                   usage=usage or Usage())

    def with_usage(self, **changes: Any) -> Judgement:
        return replace(self, usage=replace(self.usage, **changes))

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "cause": self.cause,
            "backend": self.backend,
            "model": self.model,
            "version": self.version,
            "scores": [s.available() for s in self.scores],
            "overall": [s.overall() for s in self.scores],
            "reasoning": [dict(r) for r in self.reasoning],
            "usage": asdict(self.usage),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Judgement:
        """Inverse of :meth:`to_dict` (the derived ``overall`` field is ignored)."""
        scores = data.get("scores") or [{}, {}]
        reasoning = data.get("reasoning") or [{}, {}]
        return cls(
            scores=(AgentScores(**scores[0]), AgentScores(**scores[1])),
            backend=data.get("backend", ""),
            model=data.get("model", ""),
            status=data.get("status", "ok"),
            cause=data.get("cause"),
            reasoning=(dict(reasoning[0]), dict(reasoning[1])),
            usage=Usage(**data.get("usage", {})),
            version=data.get("version", ""),
        )
