"""Failed judgements of a training run, judged again, and the log that carries them into training.

A run keeps every training episode under ``episodes/round-NNNN/batch-*.jsonl`` (see
``dat.dialogue.episodes``), those whose judgement failed too (``judgement_failed``, the cause in
``judgement``). :meth:`FailedJudgements.rejudge` judges those again and appends each success to the
round's ``rejudged.jsonl``, one line ``{"seed", "task_id", "steered", "reward", "judgement"}``.

That log is the one record of a re-judgement, whoever made it: training between rounds and on resume,
or ``dat rescore --run RUN`` while training is stopped or running. An episode with a
line there is never judged again; training adds it to its replay buffer from the logged reward and
keeps the key (``round-NNNN/SEED``, :attr:`Rejudged.key`) of what it added in its checkpoint, so each
episode enters the buffer exactly once however many writers logged it (the first line counts).
Only this module reads and writes the log; it reads the episode lines, never their arrays, so it sits
below the RL code that turns a logged episode into transitions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dat.judges.base import Judge
from dat.judges.config import RewardWeights
from dat.judges.reward import reward
from dat.records import DialogueRecord

LOG = "rejudged.jsonl"
"""The file in each round folder that records the successful re-judgements of its failed episodes."""
CACHE = "judge_cache"
"""The judge cache folder inside a run folder, where ``judge.cache_dir`` is not set."""


def run_cache_dir(run: str | Path, cache_dir: str | Path | None) -> Path:
    """Where a run's judge caches its judgements: ``cache_dir`` if set, else ``RUN/judge_cache``."""
    return Path(cache_dir) if cache_dir else Path(run) / CACHE


@dataclass(frozen=True)
class Rejudged:
    """A failed episode judged again with success: which one, and the reward it earns."""

    round: str
    """The round folder's name, ``round-NNNN``."""
    seed: int
    """The episode's seed: unique within a round, so it names the episode there."""
    reward: float
    judgement: dict[str, Any] = field(repr=False)

    @property
    def key(self) -> str:
        """``round-NNNN/SEED``: how a run's checkpoint lists what it has added to its buffer."""
        return f"{self.round}/{self.seed}"


def logged(folder: Path) -> dict[int, Rejudged]:
    """The re-judgements logged in one round folder, by seed (the first line for a seed wins).

    A line a killed writer left unfinished is skipped: its episode is simply judged again (from the
    judge's cache when it has one)."""
    path = Path(folder) / LOG
    found: dict[int, Rejudged] = {}
    if not path.is_file():
        return found
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            entry = Rejudged(folder.name, int(row["seed"]), float(row["reward"]), row["judgement"])
        except (ValueError, KeyError, TypeError):
            continue
        found.setdefault(entry.seed, entry)
    return found


def _failed_lines(folder: Path) -> list[dict[str, Any]]:
    """The episode lines of one round folder whose judgement failed, in the order they were written."""
    rows = []
    for path in sorted(folder.glob("batch-*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if row["judgement_failed"]:
                    rows.append({**row, "record": DialogueRecord.from_dict(row["record"]), "seed": int(row["seed"])})
            except (KeyError, ValueError, TypeError) as err:
                raise ValueError(f"{path}:{number}: bad episode line ({err!r}); the file is not from "
                                 "save_episodes or was edited by hand.") from err
    return rows


def _append(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines durably; a line a killed writer left unfinished is closed off first."""
    torn = False
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(("\n" if torn else "") + "".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


@dataclass
class FailedJudgements:
    """The failed judgements of one run's training episodes (``RUN/episodes``) and their re-judgements.

    Remembers the round folders with nothing left to judge, so a long run does not re-read every
    earlier round each time; only use one object while those folders stay as they are (rounds
    before the one being collected never change)."""

    episodes: Path
    settled: set[str] = field(default_factory=set)
    """Round folders whose failed episodes (if any) all have a logged re-judgement."""

    def rounds(self, before: int | None = None) -> list[Path]:
        """The round folders, oldest first; only those numbered below ``before`` when given."""
        folders = sorted(p for p in Path(self.episodes).glob("round-*") if p.is_dir())
        return [p for p in folders if before is None or int(p.name.removeprefix("round-")) < before]

    def rejudge(self, judge: Judge, weights: RewardWeights | None = None, before: int | None = None,
                batch_size: int | None = None) -> dict[str, Any]:
        """Judge again every failed episode of the rounds before ``before`` that has no logged success;
        log each success. Returns how many were judged (``rejudged``), succeeded (``recovered``) and
        still fail (``still_failed``), and the first ``cause`` of a failure this time (None if none)."""
        counts: dict[str, Any] = {"rejudged": 0, "recovered": 0, "still_failed": 0, "cause": None}
        for folder in self.rounds(before):
            if folder.name in self.settled:
                continue
            done = logged(folder)
            waiting = [row for row in _failed_lines(folder) if row["seed"] not in done]
            size = batch_size or max(len(waiting), 1)
            for start in range(0, len(waiting), size):
                batch = waiting[start:start + size]
                lines = []
                for row, judgement in zip(batch, judge([row["record"] for row in batch]), strict=True):
                    value = reward(judgement, int(row["steered"]), weights)
                    if value is None:
                        counts["cause"] = counts["cause"] or judgement.cause or "no reward from this judgement"
                        continue
                    lines.append(json.dumps({"seed": row["seed"], "task_id": row.get("task_id"),
                                             "steered": int(row["steered"]), "reward": value,
                                             "judgement": judgement.to_dict()}, ensure_ascii=False))
                if lines:
                    _append(folder / LOG, lines)
                counts["rejudged"] += len(batch)
                counts["recovered"] += len(lines)
            now = logged(folder)  # another writer may have logged some meanwhile
            left = sum(1 for row in waiting if row["seed"] not in now)
            counts["still_failed"] += left
            if not left:
                self.settled.add(folder.name)
        return counts

    def recovered(self, before: int | None = None) -> list[Rejudged]:
        """Every logged re-judgement of the rounds before ``before``, round by round."""
        return [entry for folder in self.rounds(before) for entry in logged(folder).values()]
