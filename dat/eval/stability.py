"""Instruction stability over a self-chat: the probe question branched off the dialogue at every round.

For every task of a probe set (``envs.scenarios.probes``: agent 0 reads the prompt under test, agent
1 another prompt, and agent 1 opens with a topic) and every seed, each *main* condition plays one
self-chat of ``rounds`` rounds in lockstep (:class:`dat.dialogue.rules.Lockstep`, the env's own
rules). Before the steered agent's r-th line, the dialogue is **branched**: a copy whose last
partner line is replaced by the probe question, which the steered agent answers under the
condition; the answer is scored by the prompt's test (:class:`dat.judges.probe.ProbeJudge`). The
main dialogue then goes on as if nothing had been asked. So the round-r branch is exactly an
episode of ``r`` rounds with ``env.probe=true``, what ``experiment=stability`` trains on, and round
1 asks the probe instead of the topic, before any chat.

Conditions: ``unsteered`` (no prefix), ``policy`` (a planner: state -> action, on the main lines
and the answer), ``zero`` and ``random`` (a zero and a uniform random action), and ``repeat``: the
unsteered dialogue, with the system prompt restated in the probe message, just before the question
(:data:`REMINDER`). ``repeat`` branches off the unsteered main dialogue itself, so the two differ
only by the reminder. Every condition plays the same tasks with the same seeds: the comparison is
paired by (task, seed), and intervals resample prompts (``dat.eval.stats``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch

from dat.action.projection import UpProjection
from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
from dat.judges.probe import ProbeJudge
from dat.judges.reward import reward
from dat.lm.frozen import FrozenLM
from dat.lm.kvcache import Cached
from dat.records import Utterance
from dat.seeding import derive_seed

BASELINE = "unsteered"
REPEAT = "repeat"
CONDITIONS = ("policy", BASELINE, "zero", "random", REPEAT)
REMINDER = "(Remember your instructions: {system})\n\n{question}"
"""The probe message of the ``repeat`` condition: the steered agent's system prompt, then the question."""

Policy = Callable[[torch.Tensor], Any] | str | None


@dataclass(frozen=True)
class Condition:
    """A condition: the main dialogue it branches off (``main``), the policy of its steered lines, and
    whether the probe message restates the system prompt."""

    name: str
    main: str
    policy: Policy
    remind: bool = False


def make_conditions(names: Sequence[str], planner: Policy | None) -> list[Condition]:
    """The conditions ``names`` asks for, in :data:`CONDITIONS` order (``policy`` only with a planner)."""
    unknown = sorted(set(names) - set(CONDITIONS))
    if unknown:
        raise ValueError(f"conditions {unknown} are unknown; choose from {list(CONDITIONS)}.")
    policies = {"policy": planner, BASELINE: None, "zero": "zero", "random": "random"}
    out = []
    for name in CONDITIONS:
        if name not in names or (name == "policy" and planner is None):
            continue
        out.append(Condition(name, BASELINE, None, remind=True) if name == REPEAT else
                   Condition(name, name, policies[name]))
    if not out:
        raise ValueError("no condition to run: give a policy, or name unsteered, zero, random or repeat.")
    return out


@dataclass
class ProbeAnswer:
    """One probe: the task, seed, condition and round, the message asked, the answer and its score (None:
    not asked, because the dialogue had ended; or the judgement failed)."""

    task_id: str
    prompt_id: str
    group: str
    seed: int
    condition: str
    round: int
    question: str
    answer: str | None
    score: float | None


@dataclass
class StabilityRun:
    """What :func:`measure` returns: every probe answer and every main dialogue (as plain dicts)."""

    answers: list[ProbeAnswer]
    dialogues: list[dict[str, Any]]
    seconds: float
    counts: dict[str, int]


def probe_message(task: Any, steered: int, remind: bool) -> str:
    """What the partner asks at a probe: the task's probe question, with the system prompt before it when
    ``remind``."""
    question = task.probe_question(steered)
    return REMINDER.format(system=task.agent_view(steered), question=question) if remind else question


def branch(dialogue: Dialogue, message: str) -> Dialogue:
    """A copy of ``dialogue`` whose last (partner) line is ``message``; the original is not touched. The
    steered agent's key/value cache is shared up to where the two differ (extending it makes new tensors)."""
    if not dialogue.turns or dialogue.turns[-1].agent != dialogue.partner:
        raise ValueError("A probe branches off a dialogue whose last line is the partner's.")
    copy = Dialogue(dialogue.task, dialogue.steered, dialogue.partner_opens, dialogue.systems,
                    dialogue.opening_cue, turns=[*dialogue.turns[:-1], Utterance(dialogue.partner, message)])
    cached = dialogue.caches.get(dialogue.steered)
    if cached is not None:
        copy.caches[dialogue.steered] = Cached(list(cached.ids), list(cached.keys), list(cached.values))
    return copy


def _actions(lockstep: Lockstep, dialogues: Sequence[Dialogue], policies: Sequence[Policy],
             rngs: Sequence[np.random.Generator], dim: int) -> torch.Tensor | None:
    """One action row per dialogue (NaN rows: no prefix); states are read only for callable policies."""
    if dim == 0 or all(p is None for p in policies):
        return None
    rows = np.full((len(dialogues), dim), np.nan, np.float32)
    called = [i for i, p in enumerate(policies) if callable(p)]
    if called:
        states = lockstep.observe([dialogues[i] for i in called])
        planner = policies[called[0]]
        chosen = planner(states)
        chosen = chosen.detach().cpu().numpy() if isinstance(chosen, torch.Tensor) else np.asarray(chosen)
        rows[called] = np.clip(chosen, -1.0, 1.0)
    for i, policy in enumerate(policies):
        if policy == "zero":
            rows[i] = 0.0
        elif policy == "random":
            rows[i] = rngs[i].uniform(-1.0, 1.0, dim)
    return torch.from_numpy(rows)


def measure(lm: FrozenLM, projection: UpProjection | None, tasks: Sequence[Any], conditions: Sequence[Condition],
            env: EnvConfig, rounds: int = 8, seeds: Sequence[int] = (0,), batch_size: int = 16,
            progress: Callable[[str], None] | None = None) -> StabilityRun:
    """Play every (task, seed) under every condition for ``rounds`` rounds and probe at each (module docstring).

    ``env`` gives the decoding and the state the planner reads; the dialogue's shape is fixed here (the
    partner opens, agent 0 is steered, no probe at the end of the main dialogue). Main dialogues run
    ``batch_size`` at a time (all conditions of a (task, seed) in the same batch); their probes too.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} must be at least 1.")
    cfg = replace(env, max_turns=rounds, partner_opens=True, steered=0, probe=False).validate()
    dim = projection.cfg.planner_dim if projection is not None else 0
    if dim == 0 and any(c.policy is not None for c in conditions):
        raise ValueError("Steered conditions (policy, zero, random) need an up-projection.")
    mains = list(dict.fromkeys(c.main for c in conditions))
    policy_of = {c.main: c.policy for c in conditions if not c.remind}
    policy_of.setdefault(BASELINE, None)
    items = [(task, seed) for task in tasks for seed in seeds]
    per_batch = max(1, batch_size // len(mains))
    judge = ProbeJudge()
    answers: list[ProbeAnswer] = []
    dialogues: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    started = time.perf_counter()
    for first in range(0, len(items), per_batch):
        chunk = items[first: first + per_batch]
        lockstep = Lockstep(lm, projection, cfg)
        playing = {(k, m): Dialogue.open(task, 0, True, cfg) for k, (task, _) in enumerate(chunk) for m in mains}
        rngs = {key: np.random.default_rng(derive_seed(chunk[key[0]][1], "stability-actions", chunk[key[0]][0].id,
                                                       key[1])) for key in playing}
        stream = derive_seed(*(seed for _, seed in chunk), first, "stability")
        lockstep.start(list(playing.values()), derive_seed(stream, "open"))
        for rnd in range(1, rounds + 1):
            if progress:
                progress(f"items {first + 1}-{first + len(chunk)} of {len(items)}: round {rnd}/{rounds}")
            answers += _probe(lm, projection, cfg, rnd, chunk, conditions, playing, rngs, judge, dim,
                              derive_seed(stream, "probe", rnd), counts)
            if rnd == rounds:
                break
            live = [key for key, d in playing.items() if not d.done]
            if live:
                batch = [playing[key] for key in live]
                actions = _actions(lockstep, batch, [policy_of[m] for _, m in live], [rngs[k] for k in live], dim)
                seeds_ = (derive_seed(stream, "main", rnd, 0), derive_seed(stream, "main", rnd, 1))
                lockstep.step(batch, actions, seeds_)
        _add_counts(counts, lockstep.counts)
        dialogues += [{"task_id": chunk[k][0].id, "seed": chunk[k][1], "main": m,
                       "turns": [asdict(t) for t in d.turns], "ended_early": d.done and len(d.turns) < 2 * rounds - 1}
                      for (k, m), d in playing.items()]
    return StabilityRun(answers, dialogues, time.perf_counter() - started, counts)


def _probe(lm, projection, cfg: EnvConfig, rnd: int, chunk, conditions: Sequence[Condition],
           playing: Mapping, rngs: Mapping, judge: ProbeJudge, dim: int, seed: int,
           counts: dict[str, int]) -> list[ProbeAnswer]:
    """The round-``rnd`` probe of every (item, condition) of a chunk, in one lockstep step."""
    asked, branches, out = [], [], []
    for k, (task, item_seed) in enumerate(chunk):
        for c in conditions:
            main = playing[(k, c.main)]
            message = probe_message(task, 0, c.remind)
            row = ProbeAnswer(task.id, task.scenario.id, getattr(task.scenario, "group", ""), item_seed, c.name, rnd,
                              message, None, None)
            out.append(row)
            if not main.done:
                asked.append((row, c, (k, c.main)))
                branches.append(branch(main, message))
    if not branches:
        return out
    lockstep = Lockstep(lm, projection, replace(cfg, max_turns=rnd))  # the answer is the branch's last line
    actions = _actions(lockstep, branches, [c.policy for _, c, _ in asked], [rngs[key] for _, _, key in asked], dim)
    lockstep.step(branches, actions, (derive_seed(seed, 0), derive_seed(seed, 1)))
    _add_counts(counts, lockstep.counts)
    judgements = judge([b.record() for b in branches])
    for (row, _, _), b, j in zip(asked, branches, judgements, strict=True):
        row.answer = b.turns[-1].text if b.turns[-1].agent == b.steered else None
        row.score = reward(j, b.steered)
    return out


def _add_counts(total: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + int(value)
