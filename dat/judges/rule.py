"""Rule judge: keyword, regex, price and sentiment checks over the transcript, for tests and sanity tasks.

Rules come from the record (``DialogueRecord.checks``, written by the scenario) and from the config; both
use the same dicts::

    {"agent": 0, "kind": "keyword", "pattern": "deal"}          # word or phrase (or a list: any of them)
    {"agent": 0, "kind": "regex", "pattern": r"\\bI agree\\b"}    # Python regex, case-insensitive
    {"agent": 0, "kind": "price", "at_most": 100}                # and/or "at_least": 50
    {"agent": 1, "kind": "sentiment", "target": "positive"}     # positive | negative | neutral
    {"kind": "sentiment", "target": "positive", "graded": true}  # partial credit (compound + 1) / 2

``agent`` is whose goal the rule measures (absent: the steered agent). ``speaker`` says whose lines are read:
"self" (that agent; the default for keyword, regex and sentiment), "partner", or "any" (the default for
price). The price reached is the last currency amount ($90, 90 dollars, 90 USD) in those lines; without
one the rule fails. Sentiment is the mean VADER compound score of the lines against ``sentiment_threshold``.
A ``graded`` sentiment rule gives partial credit instead of pass / fail: (c + 1) / 2 for positive,
(1 - c) / 2 for negative and 1 - |c| for neutral, with c the mean compound score, which makes a
smooth reward for sanity tasks. An agent's goal score is ``10 x mean credit`` over its rules (a
passed rule earns 1, a failed one 0); an agent without rules gets no score, and a dialogue whose
steered agent has none is a failed judgement. ``scenario_checks=False`` ignores the records' own
checks and applies the configured ones only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dat.judges.base import JudgeStats, agent_indices, settings_hash
from dat.judges.judgement import AgentScores, Judgement, Usage
from dat.records import DialogueRecord

KINDS = ("keyword", "regex", "price", "sentiment")
SPEAKERS = ("self", "partner", "any")
TARGETS = ("positive", "negative", "neutral")
_KEYS = {"agent", "kind", "pattern", "at_most", "at_least", "target", "speaker", "description", "graded"}
_AMOUNT = re.compile(
    r"\$\s?(\d[\d,]*(?:\.\d+)?)|(\d[\d,]*(?:\.\d+)?)\s*(?:dollars?|usd|bucks)\b", re.IGNORECASE
)


@dataclass(frozen=True)
class Rule:
    """One parsed, validated check."""

    kind: str
    agent: int | None = None
    patterns: tuple[str, ...] = ()
    at_most: float | None = None
    at_least: float | None = None
    target: str | None = None
    speaker: str = "self"
    graded: bool = False

    def describe(self) -> str:
        if self.kind == "price":
            bounds = [f"<= {self.at_most:g}" if self.at_most is not None else "",
                      f">= {self.at_least:g}" if self.at_least is not None else ""]
            return "price " + " and ".join(b for b in bounds if b)
        if self.kind == "sentiment":
            return f"sentiment {self.target}{' (graded)' if self.graded else ''}"
        return f"{self.kind} {' | '.join(self.patterns)!r}"


def parse_rule(spec: Any, where: str) -> Rule:
    """Validate one rule dict; ``where`` names it in errors (e.g. "record 'x' checks[2]")."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a rule must be a dict like {{'kind': 'keyword', 'pattern': 'deal'}}")
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown rule kind {kind!r}; use one of {', '.join(KINDS)}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    agent = spec.get("agent")
    if agent is not None and agent not in (0, 1):
        raise ValueError(f"{where}: 'agent' must be 0 or 1, got {agent!r}")
    speaker = spec.get("speaker", "any" if kind == "price" else "self")
    if speaker not in SPEAKERS:
        raise ValueError(f"{where}: 'speaker' must be one of {SPEAKERS}, got {speaker!r}")
    common = {"kind": kind, "agent": agent, "speaker": speaker}
    if spec.get("graded") and kind != "sentiment":
        raise ValueError(f"{where}: 'graded' applies to sentiment rules only")
    if kind in ("keyword", "regex"):
        raw = spec.get("pattern")
        patterns = (raw,) if isinstance(raw, str) else tuple(raw) if isinstance(raw, (list, tuple)) else ()
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError(f"{where}: a {kind} rule needs 'pattern': a non-empty string or list of strings")
        for p in patterns if kind == "regex" else ():
            try:
                re.compile(p)
            except re.error as err:
                raise ValueError(f"{where}: invalid regex {p!r}: {err}") from None
        return Rule(patterns=patterns, **common)
    if kind == "price":
        bounds = {k: spec.get(k) for k in ("at_most", "at_least")}
        if all(v is None for v in bounds.values()):
            raise ValueError(f"{where}: a price rule needs 'at_most' and/or 'at_least'")
        for k, v in bounds.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"{where}: '{k}' must be a number, got {v!r}")
        return Rule(at_most=bounds["at_most"], at_least=bounds["at_least"], **common)
    target = spec.get("target")
    if target not in TARGETS:
        raise ValueError(f"{where}: a sentiment rule needs 'target' in {TARGETS}, got {target!r}")
    return Rule(target=target, graded=bool(spec.get("graded", False)), **common)


def parse_rules(specs: Sequence[Any], where: str) -> tuple[Rule, ...]:
    return tuple(parse_rule(spec, f"{where}[{i}]") for i, spec in enumerate(specs))


def last_amount(texts: Sequence[str]) -> float | None:
    """The last currency amount mentioned in ``texts`` (in order), or None."""
    found = [m.group(1) or m.group(2) for t in texts for m in _AMOUNT.finditer(t)]
    return float(found[-1].replace(",", "")) if found else None


class RuleJudge:
    """Scores the goal dimension by checking rules against the transcript; deterministic and instant.

    >>> from dat.records import DialogueRecord, Utterance
    >>> rec = DialogueRecord("t", "A bike sale.", ("Ann", "Bob"), ("", ""), ("Buy cheap", "Sell high"),
    ...     (Utterance(0, "Would you take $80?"), Utterance(1, "Deal, $80 it is.")), steered=0,
    ...     checks=({"agent": 0, "kind": "price", "at_most": 100},
    ...             {"agent": 0, "kind": "keyword", "pattern": "deal", "speaker": "partner"}))
    >>> RuleJudge()([rec])[0].scores[0].goal
    10.0
    """

    name = "rule"
    model = "rules"

    def __init__(self, checks: Sequence[dict[str, Any]] = (), sentiment_threshold: float = 0.05,
                 agents: str = "steered", scenario_checks: bool = True) -> None:
        self.extra = parse_rules(list(checks), "judge.rule.checks")
        self.sentiment_threshold = sentiment_threshold
        self.agents = agents
        self.scenario_checks = scenario_checks
        self.version = "rule-v2:" + settings_hash([list(checks), sentiment_threshold, agents, scenario_checks])
        self.stats = JudgeStats()
        self._vader: Any = None

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]:
        rules = [parse_rules(list(r.checks) if self.scenario_checks else [], f"record {r.task_id!r} checks")
                 for r in records]
        out = []
        for record, own in zip(records, rules, strict=True):
            start = time.perf_counter()
            judgement = self._judge(record, own + self.extra)
            judgement = judgement.with_usage(latency_s=time.perf_counter() - start)
            self.stats.record(judgement)
            out.append(judgement)
        return out

    def metrics(self) -> dict[str, float]:
        return self.stats.metrics()

    def _judge(self, record: DialogueRecord, rules: tuple[Rule, ...]) -> Judgement:
        scores: list[AgentScores] = [AgentScores(), AgentScores()]
        reasoning: list[dict[str, str]] = [{}, {}]
        for agent in agent_indices(record, self.agents):
            mine = [r for r in rules if (record.steered if r.agent is None else r.agent) == agent]
            if not mine:
                if agent == record.steered:
                    return Judgement.failed(f"no rule checks apply to agent {agent} ({record.names[agent]})",
                                            self.name, self.model, self.version, Usage())
                continue
            results = [self._check(record, agent, r) for r in mine]
            credit = sum(float(ok) for ok, _ in results)
            scores[agent] = AgentScores(goal=10.0 * credit / len(mine))
            details = "; ".join(f"{r.describe()}: {_verdict(ok)}{note}"
                                for r, (ok, note) in zip(mine, results, strict=True))
            reasoning[agent] = {"goal": f"{credit:g}/{len(mine)} rules satisfied: {details}"}
        return Judgement(scores=(scores[0], scores[1]), backend=self.name, model=self.model,
                         reasoning=(reasoning[0], reasoning[1]), version=self.version)

    def _check(self, record: DialogueRecord, agent: int, rule: Rule) -> tuple[bool, str]:
        speakers = {"self": {agent}, "partner": {1 - agent}, "any": {0, 1}}[rule.speaker]
        texts = [u.text for u in record.turns if u.agent in speakers]
        if rule.kind == "keyword":
            found = any(re.search(rf"(?<!\w){re.escape(p)}(?!\w)", t, re.IGNORECASE)
                        for p in rule.patterns for t in texts)
            return found, ""
        if rule.kind == "regex":
            return any(re.search(p, t, re.IGNORECASE) for p in rule.patterns for t in texts), ""
        if rule.kind == "price":
            price = last_amount(texts)
            if price is None:
                return False, " (no price mentioned)"
            ok = (rule.at_most is None or price <= rule.at_most) and (
                rule.at_least is None or price >= rule.at_least)
            return ok, f" (last price {price:g})"
        compound = self._sentiment(texts)
        if rule.graded:
            graded = {"positive": (compound + 1) / 2, "negative": (1 - compound) / 2, "neutral": 1 - abs(compound)}
            return graded[rule.target or "neutral"], f" (compound {compound:.2f})"  # type: ignore[return-value]
        thr = self.sentiment_threshold
        ok = {"positive": compound > thr, "negative": compound < -thr, "neutral": abs(compound) <= thr}
        return ok[rule.target or "neutral"], f" (compound {compound:.2f})"

    def _sentiment(self, texts: Sequence[str]) -> float:
        if not texts:
            return 0.0
        if self._vader is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            self._vader = SentimentIntensityAnalyzer()
        return sum(self._vader.polarity_scores(t)["compound"] for t in texts) / len(texts)


def _verdict(ok: float | bool) -> str:
    if isinstance(ok, bool) or ok in (0.0, 1.0):
        return "yes" if ok else "no"
    return f"{float(ok):.2f}"
