"""Collected episodes and their files: transcripts people can read and re-score, arrays RL can load.

A folder of episodes holds batches, each written by one :func:`save_episodes` call:

* ``batch-NNNNN.npz``: the transitions of all episodes of the batch, concatenated along time
  (``states``, ``actions``, ``rewards``, ``next_states``, ``dones``, ``truncated``) plus ``lengths``;
* ``batch-NNNNN.jsonl``: one line per episode, in the same order, with the judge's view of the
  dialogue (``record``: :meth:`DialogueRecord.to_dict`), ``judgement``, ``reward`` and metadata
  (task id, steered side, seed, who opened, how it ended, the policy, the row ``offset`` in the npz).

Both files are written under temporary names and renamed into place, the npz first: a batch is
visible only once complete, and a crashed writer leaves at most a stray ``*.tmp`` or ``*.claim``.
Batch numbers are claimed by creating a ``.claim`` marker exclusively, so two writers never
overwrite each other's batch.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dat.atomic import atomic_write
from dat.records import DialogueRecord

ARRAYS = ("states", "actions", "rewards", "next_states", "dones", "truncated")


@dataclass
class Episode:
    """One dialogue as RL data: T steered steps, the transcript, and the judge's verdict.

    ``actions`` are NaN for unsteered episodes (no prefix at all), so they cannot be mistaken for
    zero actions. ``rewards`` are per step (terminal only unless the env pays per turn; a failed
    judgement pays 0 there and sets ``judgement_failed``); ``reward`` is the episode's judged reward,
    None when the final judgement failed.
    """

    record: DialogueRecord
    states: np.ndarray
    """(T, hidden) float32: the steered agent's state before each of its utterances."""
    actions: np.ndarray
    """(T, d) float32 actions in [-1, 1] (NaN: unsteered)."""
    rewards: np.ndarray
    """(T,) float32 step rewards."""
    next_states: np.ndarray
    """(T, hidden) float32: the state after each round (the final one too)."""
    dones: np.ndarray
    """(T,) bool: terminated at this step (the judge's reward is final; never bootstrap past it)."""
    truncated: np.ndarray
    """(T,) bool: cut at this step because the next turn would not fit in the context."""
    judgement: dict[str, Any] | None
    """The final judgement as a dict (``Judgement.to_dict()``), or None."""
    reward: float | None
    """The judged reward of the whole dialogue; None when the judgement failed."""
    task_id: str
    steered: int
    seed: int
    """The episode seed: ``DialogueEnv.reset(seed=seed)`` draws the same task and sides."""
    partner_opens: bool = False
    judgement_failed: bool = False
    """Some judgement of this episode failed (its reward is unusable for learning)."""
    left_by: int | None = None
    """Which agent said the leave phrase, if any."""
    policy: str = ""
    """What chose the actions: none, zero, random, or the policy's name."""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.rewards.shape[0])

    def meta(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "steered": self.steered, "seed": self.seed,
                "partner_opens": self.partner_opens, "judgement_failed": self.judgement_failed,
                "left_by": self.left_by, "policy": self.policy, "length": len(self),
                "terminated": bool(self.dones[-1]) if len(self) else False,
                "truncated": bool(self.truncated[-1]) if len(self) else False, "metadata": self.metadata}


def _claim(folder: Path) -> tuple[int, Path]:
    """Reserve the next free batch number by creating its (empty) marker exclusively."""
    taken = [int(p.name[6:11]) for p in folder.glob("batch-*") if p.name[6:11].isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        marker = folder / f"batch-{number:05d}.claim"
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            number += 1
            continue
        if not any(marker.with_suffix(s).exists() for s in (".jsonl", ".npz")):
            return number, marker
        marker.unlink()  # another writer finished this number between our scan and our claim
        number += 1


def save_episodes(folder: str | Path, episodes: Sequence[Episode]) -> Path | None:
    """Append ``episodes`` to ``folder`` as one new batch; return its JSONL path (None if empty)."""
    if not episodes:
        return None
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    number, marker = _claim(folder)
    lengths = np.array([len(e) for e in episodes], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    arrays = {name: np.concatenate([getattr(e, name) for e in episodes]) for name in ARRAYS}
    buffer = io.BytesIO()
    np.savez(buffer, lengths=lengths, **arrays)
    atomic_write(folder / f"batch-{number:05d}.npz", buffer.getvalue())
    lines = [json.dumps({"record": e.record.to_dict(), "judgement": e.judgement, "reward": e.reward,
                         **e.meta(), "offset": int(o)}) for e, o in zip(episodes, offsets, strict=True)]
    path = folder / f"batch-{number:05d}.jsonl"
    atomic_write(path, "\n".join(lines) + "\n")
    marker.unlink()
    return path


def load_episodes(folder: str | Path) -> list[Episode]:
    """All complete batches of ``folder``, in the order they were written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No episode folder at {folder}; pass a folder written by save_episodes.")
    episodes: list[Episode] = []
    for path in sorted(folder.glob("batch-*.jsonl")):
        npz = path.with_suffix(".npz")
        if not npz.is_file():
            raise FileNotFoundError(f"{path} has no matching {npz.name}; the batch is incomplete, remove it.")
        with np.load(npz) as data:
            arrays = {name: data[name] for name in ARRAYS}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                start, length = int(row["offset"]), int(row["length"])
                part = {name: arrays[name][start:start + length] for name in ARRAYS}
                episodes.append(Episode(
                    record=DialogueRecord.from_dict(row["record"]), judgement=row["judgement"],
                    reward=row["reward"], task_id=row["task_id"], steered=int(row["steered"]),
                    seed=int(row["seed"]), partner_opens=bool(row["partner_opens"]),
                    judgement_failed=bool(row["judgement_failed"]), left_by=row["left_by"],
                    policy=row["policy"], metadata=row.get("metadata", {}), **part))
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f"{path}:{number}: bad episode line ({err!r}); the file is not from "
                                 "save_episodes or was edited by hand.") from err
    return episodes
