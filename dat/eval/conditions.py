"""Paired evaluation: every condition plays the same held-out episodes (same tasks, sides and seeds).

Conditions: ``policy`` (the planner, deterministic), ``unsteered`` (no prefix at all, the
baseline), ``zero`` (a zero action: one constant prefix, empty slots for a linear action space, the
equal mix of the behaviours for a behaviour basis) and ``random`` (uniform random actions). Because
episode ``i`` of every condition has the same seed, its task and sides match across conditions, and
differences are paired per episode and clustered by scenario (``dat.eval.stats``).
Each dialogue samples from a stream of its own, drawn from its seed, so episode ``i`` draws the same
random numbers line by line under every condition (common random numbers: its replies agree until the
conditions make them differ), whatever the batch it is played in. Failed judgements become NaN: counted,
never averaged in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from dat.dialogue.episodes import Episode
from dat.dialogue.rollout import collect_conditions
from dat.eval.report import flat_metrics
from dat.eval.stats import summarize_conditions
from dat.judges.dimensions import DIMENSIONS

BASELINE = "unsteered"


EVALUATED = ("policy", BASELINE, "zero")
"""The conditions ``evaluate_conditions`` plays (``random`` is left to ``evaluate.py``)."""


def condition_policies(policy: Callable | None) -> dict[str, Any]:
    """The policies of each condition (the planner's only when there is one)."""
    policies: dict[str, Any] = {BASELINE: None, "zero": "zero", "random": "random"}
    if policy is not None:
        policies = {"policy": policy, **policies}
    return policies


def episode_scores(episodes: Sequence[Episode]) -> dict[str, np.ndarray]:
    """Per-episode reward and the steered agent's score on each judged dimension (NaN = failed/absent)."""
    scores: dict[str, list[float]] = {"reward": []}
    for dim in DIMENSIONS:
        scores[dim] = []
    for e in episodes:
        ok = e.judgement is not None and e.judgement.get("status") == "ok" and not e.judgement_failed
        scores["reward"].append(float(e.reward) if ok and e.reward is not None else np.nan)
        own = e.judgement["scores"][e.steered] if ok else {}
        for dim in DIMENSIONS:
            scores[dim].append(float(own[dim]) if dim in own else np.nan)
    arrays = {k: np.asarray(v, dtype=float) for k, v in scores.items()}
    return {k: v for k, v in arrays.items() if k == "reward" or not np.isnan(v).all()}


def summarize(runs: Mapping[str, Sequence[Episode]], seed: int = 0) -> dict[str, Any]:
    """Means, intervals and paired differences to the unsteered baseline, clustered by scenario; and the planner
    against the zero action (what choosing actions from the state adds to one constant action), when both
    were played."""
    first = next(iter(runs.values()))
    for name, episodes in runs.items():
        if [e.seed for e in episodes] != [e.seed for e in first]:
            raise ValueError(f"condition {name!r} did not play the same episodes; pairing is impossible.")
    scores = {name: episode_scores(episodes) for name, episodes in runs.items()}
    return summarize_conditions(scores, baseline=BASELINE, groups=[e.task_id for e in first], seed=seed,
                                versus=("policy", "zero"))


def transcript_rows(runs: Mapping[str, Sequence[Episode]], limit: int = 8) -> tuple[list[str], list[list[Any]]]:
    """A table of eval transcripts for the tracker: one row per episode (same task, sides and seed in every
    condition), each condition's reward and dialogue side by side, so steered and unsteered read together."""
    names = list(runs)
    first = runs[names[0]]
    columns = ["task", "seed", "steered side", *(f"{n} reward" for n in names), *(f"{n} transcript" for n in names)]
    rows = [[e.task_id, e.seed, e.steered, *(runs[n][i].reward for n in names),
             *(runs[n][i].record.transcript() for n in names)] for i, e in enumerate(first[:limit])]
    return columns, rows


def evaluate_conditions(
    envs, policy: Callable | None, per_task: int, seed: int, reuse: dict[str, list[Episode]] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Episode]]]:
    """Run the planner, the unsteered model and a zero action on ``per_task`` episodes of every task of
    the vector env ``envs`` (the held-out tasks; autoreset disabled, see ``dat.dialogue.rollout.collect``).

    Returns the summary and each condition's episodes. The baselines do not depend on the planner and
    their episodes are seeded, so a round can pass the previous round's baseline episodes in ``reuse``
    (which it fills) instead of replaying them. ``eval_order`` gives the task of each episode, so
    another condition can be played on the same episodes later (``experiments/state_matters.py``).
    """
    order = eval_order(len(envs.tasks), per_task)
    reuse = {} if reuse is None else reuse
    wanted = {name: chosen for name, chosen in condition_policies(policy).items() if name in EVALUATED}
    played = collect_conditions(envs, {n: p for n, p in wanted.items() if n not in reuse}, len(order), seed,
                                task_order=order)  # the conditions still to play, in one lockstep stream
    runs = {name: reuse[name] if name in reuse else played[name] for name in wanted}
    reuse.update({name: episodes for name, episodes in played.items() if name != "policy"})
    return summarize(runs, seed), runs


def eval_order(n_tasks: int, per_task: int) -> list[int]:
    """The task of each evaluation episode: ``per_task`` consecutive episodes of every task."""
    return [i for i in range(n_tasks) for _ in range(per_task)]


def eval_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Flat ``eval/<condition>/<dimension>/<stat>`` scalars, with the reward as the headline."""
    return flat_metrics(summary, prefix="eval", headline="reward")


def reward_line(metrics: Mapping[str, float]) -> str:
    """The mean reward of each condition in ``eval_metrics``, the planner first, and its paired differences
    to the unsteered model and the zero action where there are some:
    "policy 0.150, unsteered 0.246, zero 0.2 (policy - unsteered -0.094, policy - zero -0.050)"."""
    means = {key.split("/")[1]: value for key, value in metrics.items()
             if key.startswith("eval/") and key.endswith("/mean") and key.count("/") == 2}
    line = ", ".join(f"{name} {means[name]:.3f}" for name in sorted(means, key=lambda name: name != "policy"))
    if "eval/policy/diff" in metrics:
        line += f" (policy - {BASELINE} {metrics['eval/policy/diff']:+.3f}"
        if "eval/policy_vs_zero/diff" in metrics:
            line += f", policy - zero {metrics['eval/policy_vs_zero/diff']:+.3f}"
        line += ")"
    return line
