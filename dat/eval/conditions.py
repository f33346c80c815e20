"""Paired evaluation: every condition plays the same held-out episodes (same tasks, sides and seeds).

Conditions: ``policy`` (the planner, deterministic), ``unsteered`` (no prefix at all, the
baseline), ``zero`` (a zero action: one constant prefix, empty slots for a linear action space, the
equal mix of the behaviours for a behaviour basis), ``best_constant`` (the constant action that scores best on
the training tasks, ``dat.eval.constant``), ``prompted`` (no prefix; the steered agent's goal restated before each
of its turns, ``EnvConfig.goal_reminder``) and ``random`` (uniform random actions). The planner is compared with
each, and first with the strongest of them (``versus``). Every condition also reports the signs of reward hacking
in its steered lines (``dat.eval.parroting``). Because
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
from dat.dialogue.rollout import PROMPTED, collect_conditions
from dat.dialogue.scoring import OutageWatch
from dat.eval import constant, parroting
from dat.eval.report import flat_metrics
from dat.eval.stats import paired_difference, summarize_conditions
from dat.judges.dimensions import DIMENSIONS
from dat.seeding import derive_seed

BASELINE = "unsteered"
BASELINES = (BASELINE, "zero", constant.NAME, PROMPTED, "random")
"""The conditions the planner is measured against."""
EVALUATED = ("policy", BASELINE, "zero", constant.NAME, PROMPTED)
"""The conditions ``evaluate_conditions`` plays (``random`` is left to ``evaluate.py``)."""
STRONGEST = "policy_vs_strongest"
"""The metrics' name for the planner against the strongest baseline (``eval/policy_vs_strongest/...``), whichever
baseline that is in a round (the report names it)."""
SIGNS = ("restates_goal", "copies_goal", "in_character")
"""Per-episode signs of reward hacking (``dat.eval.parroting``), summarised like the scores."""


def condition_policies(policy: Callable | None, best_constant: Callable | None = None) -> dict[str, Any]:
    """The policies of each condition (the planner's and the best constant's only when there are some)."""
    policies: dict[str, Any] = {BASELINE: None, "zero": "zero"}
    if best_constant is not None:
        policies[constant.NAME] = best_constant
    policies.update({PROMPTED: PROMPTED, "random": "random"})
    if policy is not None:
        policies = {"policy": policy, **policies}
    return policies


def episode_scores(episodes: Sequence[Episode], cue: str = "") -> dict[str, np.ndarray]:
    """Per-episode reward, the steered agent's score on each judged dimension (NaN = failed/absent) and the signs
    of reward hacking in its lines (``SIGNS``)."""
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
    signs = [parroting.episode_shares(e.record, cue) for e in episodes]
    arrays.update({k: np.array([s[k] for s in signs], dtype=float) for k in SIGNS})
    return {k: v for k, v in arrays.items() if k == "reward" or not np.isnan(v).all()}


def strongest(scores: Mapping[str, Mapping[str, np.ndarray]]) -> str | None:
    """The baseline with the highest mean reward among those played (None when none was)."""
    means = {c: float(np.nanmean(scores[c]["reward"])) for c in BASELINES
             if c in scores and not np.isnan(scores[c]["reward"]).all()}
    return max(means, key=means.get) if means else None


def summarize(runs: Mapping[str, Sequence[Episode]], seed: int = 0,
              extra: Mapping[str, Mapping[str, np.ndarray]] | None = None, cue: str = "") -> dict[str, Any]:
    """Means, intervals and paired differences to the unsteered baseline, clustered by scenario; the planner
    against the strongest baseline played (``versus``: what it adds over the best a user could do without it);
    each condition's ``distinct`` share of steered lines. ``extra[condition]`` adds per-episode scores (a
    held-out judge's rewards, say) as dimensions of their own; ``cue`` is the dialogues' opening cue, whose echo
    is never in character."""
    first = next(iter(runs.values()))
    for name, episodes in runs.items():
        if [e.seed for e in episodes] != [e.seed for e in first]:
            raise ValueError(f"condition {name!r} did not play the same episodes; pairing is impossible.")
    scores = {name: {**episode_scores(episodes, cue), **(extra or {}).get(name, {})}
              for name, episodes in runs.items()}
    groups = [e.task_id for e in first]
    control = strongest(scores)
    summary = summarize_conditions(scores, baseline=BASELINE, groups=groups, seed=seed,
                                   versus=("policy", control) if control is not None else None)
    if "versus" in summary:
        summary["versus"]["name"] = STRONGEST
    if "policy" in scores:
        summary["policy_vs"] = {c: paired_difference(scores["policy"]["reward"], scores[c]["reward"], groups,
                                                     seed=seed).to_dict() for c in BASELINES if c in scores}
    summary["distinct"] = {name: parroting.distinct([e.record for e in episodes]) for name, episodes in runs.items()}
    return summary


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
    best_constant: Callable | None = None, watch: OutageWatch | None = None,
    score_again: Callable[[Mapping[str, Sequence[Episode]]], Mapping[str, Mapping[str, np.ndarray]]] | None = None,
) -> tuple[dict[str, Any], dict[str, list[Episode]]]:
    """Run the planner and the baselines (``EVALUATED``: the best constant one when ``best_constant`` is given)
    on ``per_task`` episodes of every task of the vector env ``envs`` (the held-out tasks; autoreset disabled,
    see ``dat.dialogue.rollout.collect``).

    Returns the summary and each condition's episodes. The baselines do not depend on the planner and
    their episodes are seeded, so a round can pass the previous round's baseline episodes in ``reuse``
    (which it fills) instead of replaying them. ``eval_order`` gives the task of each episode, so
    another condition can be played on the same episodes later (``experiments/state_matters.py``). ``watch``: the
    caller's judge outage watch (``dat.dialogue.rollout.collect``). ``score_again``: scores every condition's
    episodes again (held-out judges), summarised beside the training reward as ``summarize``'s ``extra``.
    """
    order = eval_order(len(envs.tasks), per_task)
    reuse = {} if reuse is None else reuse
    expected = [(derive_seed(seed, "episode", i), envs.tasks[t].id) for i, t in enumerate(order)]
    for name in [n for n, episodes in reuse.items() if [(e.seed, e.task_id) for e in episodes] != expected]:
        del reuse[name]  # played for other episodes (another seed, other tasks): played again
    wanted = {name: chosen for name, chosen in condition_policies(policy, best_constant).items() if name in EVALUATED}
    played = collect_conditions(envs, {n: p for n, p in wanted.items() if n not in reuse}, len(order), seed,
                                task_order=order, watch=watch)  # the conditions still to play, in one lockstep stream
    runs = {name: reuse[name] if name in reuse else played[name] for name in wanted}
    reuse.update({name: episodes for name, episodes in played.items() if name != "policy"})
    extra = None if score_again is None else score_again(runs)
    return summarize(runs, seed, extra=extra, cue=envs.cfg.opening_cue), runs


def eval_order(n_tasks: int, per_task: int) -> list[int]:
    """The task of each evaluation episode: ``per_task`` consecutive episodes of every task."""
    return [i for i in range(n_tasks) for _ in range(per_task)]


def eval_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Flat ``eval/<condition>/<dimension>/<stat>`` scalars, with the reward as the headline."""
    return flat_metrics(summary, prefix="eval", headline="reward")


def reward_line(metrics: Mapping[str, float]) -> str:
    """The mean reward of each condition in ``eval_metrics``, the planner first, and its paired differences
    to the unsteered model and to the strongest baseline where there are some:
    "policy 0.150, unsteered 0.246, zero 0.2 (policy - unsteered -0.094, policy - strongest -0.050)"."""
    means = {key.split("/")[1]: value for key, value in metrics.items()
             if key.startswith("eval/") and key.endswith("/mean") and key.count("/") == 2
             and not key.split("/")[1].startswith("policy_vs")}
    line = ", ".join(f"{name} {means[name]:.3f}" for name in sorted(means, key=lambda name: name != "policy"))
    if "eval/policy/diff" in metrics:
        line += f" (policy - {BASELINE} {metrics['eval/policy/diff']:+.3f}"
        if f"eval/{STRONGEST}/diff" in metrics:
            line += f", policy - strongest {metrics[f'eval/{STRONGEST}/diff']:+.3f}"
        line += ")"
    return line
