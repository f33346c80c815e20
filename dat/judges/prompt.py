"""The ``api`` judge's prompt and the tolerant parser for its reply.

The prompt follows Sotopia's evaluator (one user message: the full background both agents never see in
full, the numbered transcript, the request for every dimension of both agents, and the JSON shape); the
reply shape is Sotopia 0.1.x's ``{"evaluations": {"agent_1": {dim: [reasoning, score], ...}, ...}}``.
The parser accepts code fences, prose around the JSON, trailing commas, ``{"reasoning", "score"}``
objects and bare numbers, but never guesses a score: a missing or out-of-range value is an error.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from dat.judges.dimensions import DESCRIPTIONS, DIMENSIONS, RANGES
from dat.judges.judgement import AgentScores
from dat.records import DialogueRecord

PROMPT_VERSION = "sotopia-json-v1"


class ReplyError(ValueError):
    """The judge's reply could not be turned into valid scores; the message is the failure cause."""


def build_prompt(record: DialogueRecord) -> str:
    """One user message asking for all seven dimensions of both agents as JSON."""
    a, b = record.names
    dims = "\n".join(f"- {d} (integer from {RANGES[d][0]} to {RANGES[d][1]}): {DESCRIPTIONS[d]}"
                     for d in DIMENSIONS)
    shape = {d: ["<reasoning>", "<integer score>"] for d in DIMENSIONS}
    example = {"agent_1": shape, "agent_2": shape}
    return (
        "Here is the context of a social interaction.\n"
        f"Scenario: {record.scenario}\n"
        f"Participants: {a} and {b}\n"
        f"{a}'s background: {record.backgrounds[0]}\n"
        f"{b}'s background: {record.backgrounds[1]}\n"
        f"{a}'s goal: {record.goals[0]}\n"
        f"{b}'s goal: {record.goals[1]}\n\n"
        f"Conversation:\n{record.transcript() or '(no one spoke)'}\n\n"
        "Based on the conversation above, evaluate how well each participant achieved their goal and "
        "how they behaved, on each of the dimensions below. There are exactly two agents: use the key "
        f'"agent_1" for {a} and "agent_2" for {b}. For every dimension first reason briefly, then give '
        "an integer score in the stated range.\n"
        f"{dims}\n\n"
        "Reply with a single JSON object and nothing else, in exactly this shape:\n"
        + json.dumps({"evaluations": example})
    )


def extract_json(text: str) -> Any:
    """The JSON object inside ``text``: strips code fences and surrounding prose, repairs small slips."""
    fenced = re.search(r"```(?:json|JSON)?\s*(.*?)```", text, re.DOTALL)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        raise ReplyError("unparseable reply: no JSON object found")
    error = None
    if end > start:
        candidate = body[start:end + 1]
        for attempt in (candidate, _repair(candidate)):
            try:
                return json.loads(attempt)
            except json.JSONDecodeError as err:
                error = err
    if _cut_off(body[start:]):
        raise ReplyError(f"unparseable reply: the JSON object is cut off (it opens at char {start} and never closes; "
                         "a server that stops at its token limit without saying so cuts replies: raise "
                         "judge.api.max_tokens or the server's own limit)")
    raise ReplyError(f"unparseable reply: invalid JSON ({error.msg} at char {error.pos})")


def _cut_off(text: str) -> bool:
    """Whether ``text`` (from its first ``{``) is JSON that stops before its end: it runs out inside a string or
    with brackets open, none of them closed by the wrong bracket (that is invalid JSON, not a cut one)."""
    closers, stack, quoted, escaped = {"{": "}", "[": "]"}, [], False, False
    for char in text:
        if quoted:
            escaped, quoted = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            quoted = True
        elif char in closers:
            stack.append(closers[char])
        elif char in "}]":
            if not stack or stack.pop() != char:
                return False
            if not stack:
                return False  # one whole object, closed
    return quoted or bool(stack)


def _repair(text: str) -> str:
    text = text.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'")
    return re.sub(r",\s*([}\]])", r"\1", text)


def parse_reply(
    text: str, names: tuple[str, str]
) -> tuple[tuple[AgentScores, AgentScores], tuple[dict[str, str], dict[str, str]]]:
    """Scores and reasoning of both agents from a judge reply, or :class:`ReplyError` saying what is wrong."""
    data = extract_json(text)
    if isinstance(data, dict):
        for wrapper in ("evaluations", "value", "properties"):
            if isinstance(data.get(wrapper), dict):
                data = data[wrapper]
    if not isinstance(data, dict):
        raise ReplyError("unparseable reply: the JSON is not an object")
    lowered = {str(k).strip().lower(): v for k, v in data.items()}
    scores, reasoning = [], []
    for i, name in enumerate(names):
        label = f"agent_{i + 1}"
        block = lowered.get(label, lowered.get(name.strip().lower()))
        if not isinstance(block, dict):
            raise ReplyError(f"missing scores of {label} ({name})")
        block = {str(k).strip().lower(): v for k, v in block.items()}
        values: dict[str, float] = {}
        reasons: dict[str, str] = {}
        for dim in DIMENSIONS:
            if dim not in block:
                raise ReplyError(f"missing score {label}.{dim}")
            score, reason = _score_and_reason(block[dim], f"{label}.{dim}")
            low, high = RANGES[dim]
            if not low <= score <= high:
                raise ReplyError(f"out of range: {label}.{dim}={score:g} (allowed {low}..{high})")
            values[dim] = score
            if reason:
                reasons[dim] = reason
        scores.append(AgentScores(**values))
        reasoning.append(reasons)
    return (scores[0], scores[1]), (reasoning[0], reasoning[1])


def _score_and_reason(value: Any, where: str) -> tuple[float, str]:
    reason: Any = ""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        reason, value = value
    elif isinstance(value, dict) and "score" in value:
        reason, value = value.get("reasoning", ""), value["score"]
    integral = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and float(value).is_integer()
    if not integral:  # the prompt asks for an integer: 7.5 or "7" is a reply that did not follow it
        raise ReplyError(f"invalid score {where}={value!r} (expected an integer)")
    return int(value), str(reason)
