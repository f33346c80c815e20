"""Filling a dataset: play the episodes a dataset (or its shard) still lacks, one committed batch at a time.

``fill`` is what ``dat collect`` runs. It plays on the same vector env as training (``dat.dialogue.rollout``),
numbers episodes as the dataset's shard owns them (``dat.dialogue.dataset.shard_indices``) and commits every
``batch`` episodes, so a killed collection resumes where its last batch ended and a larger ``n`` adds only the
episodes not yet played.
"""

from __future__ import annotations

from collections.abc import Callable

from dat.dialogue.dataset import Dataset, shard_indices
from dat.dialogue.rollout import Policy, collect
from dat.dialogue.scoring import JudgeOutage, OutageWatch


def missing(data: Dataset, n: int) -> list[int]:
    """The indices below ``n`` that the dataset's shard owns and has not committed, in order."""
    done = set(data.indices)
    return [g for g in shard_indices(n, data.card["shard"], data.card["shards"]) if g not in done]


def fill(data: Dataset, envs, policy: Policy, n: int, *, batch: int, noise: float = 0.0,
         on_batch: Callable[[int, dict[str, float]], None] | None = None, watch: OutageWatch | None = None) -> int:
    """Play and commit the episodes ``missing(data, n)`` names, ``batch`` at a time; return how many were played.

    ``on_batch(committed, stats)`` is called after each commit with the batch's ``rollout/…`` and ``perf/…``
    metrics. A failed judgement is kept with its cause (a passing failure: the collection goes on); a judge
    outage (``watch``: failed judgements in a row, counted across batches) stops it with every earlier batch
    committed and the interrupted batch's judged episodes too; a re-run plays only the rest (the outage's failed
    dialogues again, judged this time).
    """
    todo = missing(data, n)
    watch = watch or OutageWatch()
    for start in range(0, len(todo), batch):
        chunk = todo[start:start + batch]
        stats: dict[str, float] = {}
        try:
            episodes = collect(envs, policy, len(chunk), data.card["seed"], indices=chunk, noise=noise,
                               keep_failed=True, stats=stats, watch=watch)
        except JudgeOutage as stopped:
            judged = [(g, e) for g, e in stopped.episodes if not e.judgement_failed]
            if judged:
                data.append([e for _, e in judged], [g for g, _ in judged])
            raise
        data.append(episodes, chunk)
        if on_batch is not None:
            on_batch(len(data), stats)
    return len(todo)
