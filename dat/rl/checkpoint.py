"""Resumable training state, written once per round so a killed run loses at most the round in flight.

A checkpoint is a folder ``checkpoints/round-NNNN/`` holding the algorithm (SB3 zip: actor, critics,
targets, optimisers, normaliser), the replay buffer (npz, no pickle), the RNG states and
``state.json`` (round counter, metric history, W&B run id, judge cache location). It is written
into a temporary folder and renamed into place, then ``checkpoints/latest`` is replaced
atomically; a folder without its ``COMPLETE`` marker is never loaded. Resuming restores exactly
the state after the last complete round, so a re-run neither loses nor duplicates data.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dat.rl.buffer import load_buffer, save_buffer

MARKER = "COMPLETE"


@dataclass
class RunState:
    """Everything about the loop's progress that is not a tensor."""

    round: int = 0
    """Rounds completed (the next round to run)."""
    history: list[dict[str, float]] = field(default_factory=list)
    """Per-round metrics, for plots and the final table."""
    wandb_id: str | None = None
    """The W&B run to continue on resume."""
    judge_cache: str | None = None
    """Where the judge cache lives (judgements survive the run)."""
    episodes: int = 0
    """Episodes collected so far."""
    recovered: list[str] = field(default_factory=list)
    """Episodes (``round-NNNN/<seed>``) whose failed judgement succeeded when judged again, now in the buffer."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The settings that make the run what it is (``dat.config.identity``), compared before a resume."""


def save_checkpoint(root: Path, algo, state: RunState, keep: int = 2) -> Path:
    """Write the checkpoint of ``state.round`` under ``root`` and point ``latest`` at it."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"round-{state.round:04d}"
    staging = root / f".staging-{state.round:04d}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    algo.save(staging / "algo.zip")
    if algo.replay_buffer is not None and algo.replay_buffer.size() > 0:
        save_buffer(algo.replay_buffer, staging / "buffer.npz")
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    (staging / "rng.pkl").write_bytes(pickle.dumps(rng))
    (staging / "state.json").write_text(json.dumps(asdict(state), indent=1))
    (staging / MARKER).write_text("ok\n")
    _fsync_dir(staging)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name)
    pointer.replace(root / "latest")
    for old in sorted(root.glob("round-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint folder, or None."""
    pointer = root / "latest"
    candidates = [root / pointer.read_text().strip()] if pointer.is_file() else []
    candidates += sorted(root.glob("round-*"), reverse=True)
    return next((c for c in candidates if (c / MARKER).is_file()), None)


def load_checkpoint(folder: Path, algo_class, env, device: str = "cpu") -> tuple[Any, RunState]:
    """Restore the algorithm (with its buffer) onto ``device`` and the run state; reseed the global RNGs."""
    algo = algo_class.load(folder / "algo.zip", env=env, device=device)
    if (folder / "buffer.npz").is_file():
        load_buffer(folder / "buffer.npz", algo.replay_buffer)
    rng = pickle.loads((folder / "rng.pkl").read_bytes())
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    state = RunState(**json.loads((folder / "state.json").read_text()))
    return algo, state


def clean_staging(root: Path) -> list[Path]:
    """Remove half-written checkpoints (``.staging-*``) a killed run left behind; return what was removed.

    One run writes to a folder at a time, so any staging folder found when a run starts is an orphan.
    """
    orphans = sorted(root.glob(".staging-*")) if root.is_dir() else []
    for folder in orphans:
        shutil.rmtree(folder, ignore_errors=True)
    return orphans


def changed_settings(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The keys whose values differ between a checkpoint's settings and this run's (empty: same run)."""
    if not saved:  # a checkpoint from before settings were recorded: nothing to compare
        return []
    return sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))


def _fsync_dir(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as f:
            os.fsync(f.fileno())
