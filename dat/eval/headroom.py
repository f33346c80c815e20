"""Headroom: how much a planner that reads the dialogue could gain over the best constant action, before any RL.

A planner can beat every constant action only where the best action differs from task to task. Play every
candidate action (``dat.eval.constant.candidates``: the zero action and the corners) on the same episodes of
every task, then compare

* the **best constant**: the one candidate with the highest mean reward over all tasks, played everywhere;
* the **oracle**: on each task, the candidate that is best *there*. Picked and scored on the same episodes the
  oracle is biased upwards (the maximum of noisy means beats the best true mean), so it is also **cross-fitted**:
  each task's episodes are split in two halves by their order, the candidate picked on one half is scored on the
  other, and both ways are averaged. The cross-fitted oracle is what a perfect reader of the task could
  expect on new episodes; its gain over the best constant, paired by task, is the headroom.

With one episode per task only the in-sample oracle exists (reported, flagged as biased). A headroom whose
interval includes 0 is below what the evaluation can resolve: such a task cannot show that a planner reads
its state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dat.eval.stats import paired_difference


def headroom(rewards: Mapping[str, Sequence[float]], tasks: Sequence[str], seed: int = 0) -> dict[str, Any]:
    """The oracle against the best constant action from every candidate's rewards on the same episodes.

    ``rewards[label][i]`` is candidate ``label``'s reward on episode ``i`` (NaN: a failed judgement), ``tasks[i]``
    the episode's task; every candidate played the same episodes. Returns the candidates' means, the best constant,
    each task's best candidate, the in-sample and cross-fitted oracles, and the headroom (cross-fitted oracle minus
    the best constant, per task, with a paired 95 % interval over tasks; the in-sample one when a task has one
    episode).
    """
    labels = list(rewards)
    table = np.array([np.asarray(rewards[k], float) for k in labels])  # (candidates, episodes)
    if table.ndim != 2 or table.shape[1] != len(tasks):
        raise ValueError(f"every candidate needs one reward per episode ({len(tasks)} episodes).")
    ids = list(dict.fromkeys(tasks))
    rows = {t: [i for i, u in enumerate(tasks) if u == t] for t in ids}
    per_task = np.array([np.nanmean(table[:, rows[t]], axis=1) for t in ids])  # (tasks, candidates)
    means = {k: float(np.nanmean(per_task[:, c])) for c, k in enumerate(labels)}
    best = max(labels, key=lambda k: means[k])
    picked = {t: labels[int(np.nanargmax(per_task[j]))] for j, t in enumerate(ids)}
    in_sample = np.nanmax(per_task, axis=1)
    crossed = np.array([_cross_fitted(table[:, rows[t]]) for t in ids])
    oracle = crossed if not np.isnan(crossed).any() else in_sample
    constant = per_task[:, labels.index(best)]
    gain = paired_difference(oracle, constant, seed=seed)
    return {"candidates": means, "best_constant": best, "task_best": picked,
            "tasks_where_best_differs": sum(p != best for p in picked.values()), "tasks": len(ids),
            "oracle_in_sample": float(np.mean(in_sample)),
            "oracle_cross_fitted": None if np.isnan(crossed).any() else float(np.mean(crossed)),
            "headroom": {"diff": gain.mean_diff, "low": gain.ci_low, "high": gain.ci_high, "p": gain.p_value,
                         "oracle": "cross-fitted" if oracle is crossed else "in-sample (biased upwards)"}}


def _cross_fitted(table: np.ndarray) -> float:
    """One task's oracle value on held-out halves: episodes split by order (first half, second half), the best
    candidate of each half scored on the other; NaN with fewer than two episodes."""
    n = table.shape[1]
    if n < 2:
        return float("nan")
    halves = (np.arange(n) < n // 2), (np.arange(n) >= n // 2)
    values = []
    for pick, score in (halves, halves[::-1]):
        chosen = int(np.nanargmax(np.nanmean(table[:, pick], axis=1)))
        values.append(np.nanmean(table[chosen, score]))
    return float(np.mean(values))
