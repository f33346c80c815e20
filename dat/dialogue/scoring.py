"""Scoring: a finished dialogue's judgement turned into the steered agent's reward, and the reward into step
rewards. What the envs pay per step (``envs.DialogueEnv``, ``envs.vector_env``) and what the collector
(``dat.dialogue.rollout``) checks for an outage; kept beside the rules so that the envs need not import the
collector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dat.dialogue.rules import Dialogue
from dat.judges.config import OUTAGE_AFTER

RewardFn = Callable[[Any, int], "float | None"]


class JudgeOutage(ValueError):
    """Judgements failed many in a row: the judge is down or misconfigured, so collecting on is pointless.

    ``episodes`` holds what the interrupted call had finished, failed ones included, as ``(number, episode)`` pairs
    (the episode's number in its call, or the index it was given); the caller writes them before it stops.
    """

    def __init__(self, message: str, episodes: Sequence[tuple[int, Any]] = ()):
        super().__init__(message)
        self.episodes = list(episodes)


def outage(judgements: Sequence[dict | None]) -> JudgeOutage:
    """The error for failed judgements in a row, naming the first cause (HTTP status, refused connection)."""
    causes = [j.get("cause") for j in judgements if isinstance(j, dict) and j.get("cause")]
    cause = causes[0] if causes else "the judge returned no judgement"
    return JudgeOutage(f"the judge failed {len(judgements)} judgements in a row ({cause}). Check the judge "
                       "settings (judge.backend, judge.api.base_url, judge.api.api_key_env) and re-run: collected "
                       "episodes and cached judgements are kept.")


class OutageWatch:
    """Tells a judge outage from a passing failure: failed judgements counted in a row, across calls (a run or a
    collection keeps one watch for its whole life), an outage once ``after`` have failed without a success between.
    """

    def __init__(self, after: int = OUTAGE_AFTER):
        if after < 1:
            raise ValueError(f"An outage needs at least one failed judgement in a row; got after={after}.")
        self.after = after
        self.failures: list[dict | None] = []

    def see(self, judgements: Sequence[dict | None], failed: Sequence[bool]) -> None:
        """Count a step's judgements, in order; raise ``JudgeOutage`` once ``after`` failed in a row."""
        for judgement, bad in zip(judgements, failed, strict=True):
            if bad:
                self.failures.append(judgement)
            else:
                self.failures.clear()
        if len(self.failures) >= self.after:
            raise outage(self.failures)


@dataclass(frozen=True)
class Verdict:
    """A judged dialogue: the steered agent's reward (None: failed) and the judgement as a dict."""

    reward: float | None
    judgement: dict[str, Any] | None


def default_reward(judgement: Any, steered: int) -> float | None:
    """A number passes through; a :class:`dat.judges.Judgement` goes through ``dat.judges.reward``."""
    if judgement is None or isinstance(judgement, (int, float)):
        return None if judgement is None else float(judgement)
    from dat.judges.reward import reward

    return reward(judgement, steered)


def judgement_dict(judgement: Any) -> dict[str, Any] | None:
    if judgement is None:
        return None
    if hasattr(judgement, "to_dict"):
        return judgement.to_dict()
    return {"value": judgement}


def score(judge: Callable, reward_fn: RewardFn, dialogues: Sequence[Dialogue]) -> list[Verdict]:
    """Judge all ``dialogues`` in one call and turn each judgement into the steered agent's reward."""
    if not dialogues:
        return []
    judgements = list(judge([d.record() for d in dialogues]))
    if len(judgements) != len(dialogues):
        raise ValueError(f"The judge returned {len(judgements)} judgements for {len(dialogues)} dialogues.")
    verdicts = []
    for d, j in zip(dialogues, judgements, strict=True):
        value = reward_fn(j, d.steered)
        ok = value is not None and np.isfinite(value)
        verdicts.append(Verdict(float(value) if ok else None, judgement_dict(j)))
    return verdicts


def pay(dialogue: Dialogue, verdict: Verdict) -> float:
    """The step reward for a verdict: the change since the last paid one (0.0 when it failed).

    With a terminal reward this is the judged reward itself; per turn the step rewards sum to it.
    """
    if verdict.reward is None:
        return 0.0
    step = verdict.reward - dialogue.paid
    dialogue.paid = verdict.reward
    return step
