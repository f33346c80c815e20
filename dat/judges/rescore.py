"""Judge saved episodes again: a file of episodes into a new file with another judge (``rescore``), or a run's
failed training episodes in place (``rescore_run``). ``dat rescore`` (``dat_pipeline/rescore.py``) is the command.

With a file, each input line is a JSON object with at least ``{"record": DialogueRecord.to_dict(), ...}``; the
output line is the same object with ``judgement`` and ``reward`` replaced, every other field kept as it was, and
the input is never modified. With a run, each success is logged in ``episodes/round-NNNN/rejudged.jsonl``
(``dat.judges.rejudge``), and the next ``python train.py`` of the run adds it to the replay buffer without judging
it again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dat.atomic import atomic_path
from dat.judges.base import Judge
from dat.judges.config import RewardWeights
from dat.judges.rejudge import FailedJudgements
from dat.judges.reward import reward
from dat.records import DialogueRecord


def _read(path: Path) -> list[dict[str, Any]]:
    lines = []
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                DialogueRecord.from_dict(obj["record"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}:{number}: not an episode line with a valid 'record' ({err!r})") from None
            lines.append(obj)
    return lines


def rescore(episodes: Path, out: Path, judge: Judge, weights: RewardWeights | None = None,
            batch_size: int = 32) -> dict[str, float]:
    """Judge every episode of ``episodes`` again and write them to ``out``; returns a summary."""
    episodes, out = Path(episodes), Path(out)
    if out.resolve() == episodes.resolve():
        raise ValueError(f"--out {out} is the input file; write the re-scored episodes to a new file")
    lines = _read(episodes)
    records = [DialogueRecord.from_dict(obj["record"]) for obj in lines]
    rewards: list[float] = []
    failures = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as f:
        for start in range(0, len(lines), batch_size):
            batch, objs = records[start:start + batch_size], lines[start:start + batch_size]
            for obj, record, judgement in zip(objs, batch, judge(batch), strict=True):
                value = reward(judgement, record.steered, weights)
                obj["judgement"], obj["reward"] = judgement.to_dict(), value
                failures += 0 if judgement.ok else 1
                if value is not None:
                    rewards.append(value)
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    summary = {"episodes": float(len(lines)), "failures": float(failures),
               "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan")}
    return {**summary, **judge.metrics()}


def rescore_run(run: Path, judge: Judge, weights: RewardWeights | None = None,
                batch_size: int | None = None) -> dict[str, Any]:
    """Judge the failed training episodes of run folder ``run`` again, logging each success where
    training picks it up (``dat.judges.rejudge``); returns the counts of ``FailedJudgements.rejudge``
    and the judge's counters."""
    episodes = Path(run) / "episodes"
    if not episodes.is_dir():
        raise FileNotFoundError(f"{run} has no episodes/ folder; pass a training run folder (outputs/train/...)")
    counts = FailedJudgements(episodes).rejudge(judge, weights, batch_size=batch_size)
    return {**counts, **judge.metrics()}
