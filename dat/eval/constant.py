"""The best constant action: the strongest planner that never reads its state, chosen on the training tasks.

A planner earns its keep only by what it adds over the best action it could have played everywhere. The
candidates are the zero action and the corners of the action space (every sign pattern of ``[-1, 1]^d``; past
``MAX_CORNERS`` corners, as the corners grow as ``2^d``, the ``d`` corners with one coordinate up, which under a
behaviour basis's softmax play each behaviour alone, and the rest drawn with a fixed seed). Each plays the
same episodes, ``per_task`` on every *training* task with the run's judge, and the highest mean reward wins: the
held-out tasks never choose it, so it is a baseline a user could have picked before seeing them.

The choice is cached as JSON under the model's artefact folder (``best_constant/<key>.json``), keyed by
everything that decides it: the action space's fingerprint, the judge and its reward, the training tasks, the
dialogue rules and decoding, ``per_task``, the seed and the candidates. Another basis or another judge never
reuses it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dat.atomic import atomic_write
from dat.dialogue.rollout import collect_conditions
from dat.dialogue.scoring import OutageWatch

NAME = "best_constant"
"""The condition's name in evaluations."""
MAX_CORNERS = 16
"""Action spaces with more corners than this (d > 4) try this many of them, drawn at random."""


@dataclass(frozen=True)
class Constant:
    """A policy that plays one action whatever the state (a condition of ``collect_conditions``)."""

    action: tuple[float, ...]
    label: str

    @property
    def __name__(self) -> str:  # the episodes' policy name
        return NAME

    def __call__(self, states) -> np.ndarray:
        return np.tile(np.asarray(self.action, np.float32), (len(states), 1))


def candidates(d: int) -> dict[str, tuple[float, ...]]:
    """The zero action and the corners of ``[-1, 1]^d`` by a label that shows the signs (``"+-"``). When there are
    more than ``MAX_CORNERS``, those with one coordinate up come first (``one_hot``: a behaviour basis's
    behaviours alone, the baseline a user would try first) and fixed-seed draws fill the rest."""
    if 2 ** d <= MAX_CORNERS:
        corners = list(itertools.product((1.0, -1.0), repeat=d))
    else:
        corners = [c for label, c in one_hot(d).items() if label != "zero"][:MAX_CORNERS]
        rng = np.random.default_rng(2 ** 16 + d)
        while len(corners) < MAX_CORNERS:
            drawn = tuple(float(x) for x in rng.choice((1.0, -1.0), d))
            if drawn not in corners:
                corners.append(drawn)
    return {"zero": (0.0,) * d, **{_signs(c): c for c in corners}}


def one_hot(d: int) -> dict[str, tuple[float, ...]]:
    """The zero action and the ``d`` corners with one logit up and the rest down: under a behaviour basis's sharp
    softmax, each behaviour alone (the null point too, where the basis has one), whatever ``d``."""
    corners = [tuple(1.0 if j == i else -1.0 for j in range(d)) for i in range(d)]
    return {"zero": (0.0,) * d, **{_signs(c): c for c in corners}}


def _signs(action: Sequence[float]) -> str:
    """A candidate's label: the sign of each coordinate ("+-")."""
    return "".join("+" if s > 0 else "-" for s in action)


def cache_key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def choose(envs, per_task: int, seed: int, settings: Mapping[str, Any], cache: Path | None,
           watch: OutageWatch | None = None, announce: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The best constant action over ``envs``' tasks (the training tasks), as a record:
    ``{"label", "action", "means": {label: mean reward}, "episodes", "settings"}``.

    ``settings`` are what decide the choice besides the candidates (see the module docstring); with a ``cache``
    folder, a record made with the same settings is read back instead of played again, and a new one is written.
    ``watch``: the caller's judge outage watch (``dat.dialogue.rollout.collect``). ``announce`` is told what is
    about to be played, when the choice is not read back (it can take a while: every candidate on every task).
    """
    options = candidates(envs.single_action_space.shape[0])
    settings = {**settings, "per_task": per_task, "seed": seed, "candidates": list(options)}
    path = None if cache is None else Path(cache) / f"{cache_key(settings)}.json"
    if path is not None and path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("settings") == json.loads(json.dumps(settings, default=str)):
            return saved
    if announce is not None:
        announce(f"choosing the best constant action: {len(options)} candidates x {len(envs.tasks)} training tasks x "
                 f"{per_task} ({len(options) * len(envs.tasks) * per_task} dialogues; once per setting, then cached"
                 + ("" if path is None else f" at {path}") + ")")
    options, played = play(envs, per_task, seed, watch, options)
    means = {label: _mean([e.reward for e in episodes]) for label, episodes in played.items()}
    best = max(means, key=lambda k: (np.nan_to_num(means[k], nan=-np.inf), k == "zero"))
    record = {"label": best, "action": list(options[best]), "means": means, "episodes": len(envs.tasks) * per_task,
              "settings": json.loads(json.dumps(settings, default=str))}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record, indent=2) + "\n")
    return record


def play(envs, per_task: int, seed: int, watch: OutageWatch | None = None,
         options: Mapping[str, tuple[float, ...]] | None = None
         ) -> tuple[dict[str, tuple[float, ...]], dict[str, list]]:
    """Every candidate (``options``, by default ``candidates``) on the same episodes, ``per_task`` on each of
    ``envs``' tasks in task order (one lockstep stream): the candidates and each one's episodes
    (``dat.eval.headroom`` compares them task by task)."""
    options = dict(candidates(envs.single_action_space.shape[0]) if options is None else options)
    order = [t for t in range(len(envs.tasks)) for _ in range(per_task)]
    played = collect_conditions(envs, {label: Constant(a, label) for label, a in options.items()}, len(order), seed,
                                task_order=order, watch=watch)
    return options, played


def policy(record: Mapping[str, Any]) -> Constant:
    """The chosen action as a condition's policy."""
    return Constant(tuple(float(x) for x in record["action"]), str(record["label"]))


def _mean(values: Sequence[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")
