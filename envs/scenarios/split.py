"""Deterministic train / eval split of tasks, by scenario.

Rule: a task is in ``eval`` when ``int(sha256("dat-split:" + task.scenario.id)[:8], 16) % 100 < 25``,
else in ``train``. Three properties follow, and are why this rule was chosen:

* all tasks of a scenario fall on the same side, so evaluation is on *held-out scenarios*, not on
  a new character pair of a scenario the planner trained on;
* the side of a scenario depends only on its own id: adding or removing other scenarios never moves
  it, and the split is the same on every machine and Python version (no ``hash()`` salt);
* about a quarter of the scenarios are held out (the exact share varies with the ids).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from .schema import Task

SPLITS = ("train", "eval")
EVAL_PERCENT = 25


def split_of(scenario_id: str) -> str:
    """ "train" or "eval" for a scenario id (see the module docstring for the rule)."""
    digest = hashlib.sha256(f"dat-split:{scenario_id}".encode()).hexdigest()
    return "eval" if int(digest[:8], 16) % 100 < EVAL_PERCENT else "train"


def split_tasks(tasks: Iterable[Task], split: str) -> list[Task]:
    """The tasks on one side of the split, in their original order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [t for t in tasks if split_of(t.scenario.id) == split]


def per_scenario(tasks: Iterable[Task], limit: int | None) -> list[Task]:
    """At most ``limit`` tasks of each scenario (its first ones, in order); all of them when ``limit`` is None.

    A scenario with several tasks (character pairs, or a probe prompt's partners and topics) would
    otherwise weigh more in a measurement cut to fewer tasks."""
    tasks = list(tasks)
    if limit is None:
        return tasks
    seen: dict[str, int] = {}
    kept = []
    for task in tasks:
        seen[task.scenario.id] = seen.get(task.scenario.id, 0) + 1
        if seen[task.scenario.id] <= limit:
            kept.append(task)
    return kept
