"""The one interface every judge backend follows, and the counters behind ``metrics()``."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from dat.judges.judgement import Judgement
from dat.records import DialogueRecord


@runtime_checkable
class Judge(Protocol):
    """Scores a batch of dialogues; never raises for a bad reply, only for a bad configuration.

    >>> from dat.judges.rule import RuleJudge
    >>> judge: Judge = RuleJudge()
    >>> judge.name, judge.model
    ('rule', 'rules')
    """

    name: str
    """Backend name, e.g. "api"."""
    model: str
    """Which model (or rule set) produced the scores, recorded in every judgement."""
    version: str
    """Prompt / scoring version plus a hash of the settings that change scores (part of the cache key)."""

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]: ...

    def metrics(self) -> dict[str, float]: ...


class JudgeStats:
    """Thread-safe running totals of what judging cost; ``metrics()`` exposes them as ``judge/…``."""

    FIELDS = ("calls", "cache_hits", "failures", "retries", "prompt_tokens", "completion_tokens")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(self.FIELDS, 0.0)
        self._latency = 0.0

    def record(self, judgement: Judgement) -> None:
        """Count one judgement produced by a backend (not one served from the cache)."""
        u = judgement.usage
        with self._lock:
            self._totals["calls"] += 1
            self._totals["failures"] += 0 if judgement.ok else 1
            self._totals["retries"] += u.retries
            self._totals["prompt_tokens"] += u.prompt_tokens
            self._totals["completion_tokens"] += u.completion_tokens
            self._latency += u.latency_s

    def add_cache_hits(self, n: int) -> None:
        with self._lock:
            self._totals["cache_hits"] += n

    def metrics(self) -> dict[str, float]:
        with self._lock:
            out = {f"judge/{k}": v for k, v in self._totals.items()}
            calls = self._totals["calls"]
            out["judge/latency_s"] = self._latency / calls if calls else 0.0
            out["judge/latency_total_s"] = self._latency
            out["judge/failure_rate"] = self._totals["failures"] / calls if calls else 0.0
            return out


def settings_hash(settings: object) -> str:
    """A short, stable hash of the settings that change a judge's scores (for its ``version``)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def agent_indices(record: DialogueRecord, agents: str) -> tuple[int, ...]:
    """The agents a backend scores: only the steered one, or both (``agents`` is 'steered' or 'both')."""
    return (record.steered,) if agents == "steered" else (0, 1)
