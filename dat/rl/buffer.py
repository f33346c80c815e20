"""Replay-buffer helpers: whole episodes in, a crash-safe non-pickle file out, normaliser statistics.

They work on stable-baselines3's ``ReplayBuffer`` (one env, ``optimize_memory_usage=False``), the
buffer :class:`dat.rl.td3bc.TD3BC` samples from. Actions must already be in the policy's [-1, 1]
space. An episode that ends at the judge is *terminated*: its last transition has ``done = 1``,
so the critic target there is the reward alone and nothing is bootstrapped past the judgement.

The file is one ``.npz`` holding the transitions in chronological order (oldest first) and a JSON
header; it is written to a temporary name and moved into place with ``os.replace``, so a reader
sees either the previous complete file or the new complete file, never a partial one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from dat.atomic import atomic_path

FORMAT = "dat-replay-buffer"
VERSION = 1
FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _check_buffer(buffer: ReplayBuffer) -> None:
    if buffer.n_envs != 1 or buffer.optimize_memory_usage:
        raise ValueError("dat.rl.buffer supports ReplayBuffer(n_envs=1, optimize_memory_usage=False) only")


def _dims(buffer: ReplayBuffer) -> tuple[int, int]:
    return int(np.prod(buffer.obs_shape)), int(buffer.action_dim)


def _rows(name: str, values: np.ndarray, steps: int, width: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim == 0 or len(arr) != steps or arr.size != steps * width:
        raise ValueError(
            f"add_episode: {name} has shape {arr.shape}, expected {steps} rows of {width} values "
            f"(T={steps} transitions, as many as rewards)"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"add_episode: {name} contains NaN or inf")
    return arr.reshape(steps, width)


def add_episode(
    buffer: ReplayBuffer,
    observations: np.ndarray,
    next_observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: bool = True,
) -> int:
    """Appends one episode of T transitions and returns T.

    ``observations``/``next_observations``: (T, obs_dim); ``actions``: (T, action_dim) in [-1, 1];
    ``rewards``: (T,). ``terminated=True`` marks the last transition done (the episode really ended,
    e.g. the judge scored it); ``False`` means it was cut short and the critic may bootstrap.
    """
    _check_buffer(buffer)
    obs_dim, act_dim = _dims(buffer)
    steps = len(np.asarray(rewards).reshape(-1))
    if steps == 0:
        raise ValueError("add_episode: the episode has no transitions")
    obs = _rows("observations", observations, steps, obs_dim)
    nxt = _rows("next_observations", next_observations, steps, obs_dim)
    act = _rows("actions", actions, steps, act_dim)
    rew = _rows("rewards", rewards, steps, 1)
    if np.abs(act).max() > 1 + 1e-6:
        raise ValueError(
            f"add_episode: actions reach {np.abs(act).max():.3g} but must lie in [-1, 1]; "
            "rescale them with model.policy.scale_action(...)"
        )
    dones = np.zeros(steps, dtype=np.float32)
    dones[-1] = float(terminated)
    rows = {
        "observations": obs.reshape(steps, 1, *buffer.obs_shape),
        "next_observations": nxt.reshape(steps, 1, *buffer.obs_shape),
        "actions": act.reshape(steps, 1, act_dim),
        "rewards": rew.reshape(steps, 1),
        "dones": dones.reshape(steps, 1),
        "timeouts": np.zeros((steps, 1), dtype=np.float32),
    }
    _write(buffer, rows, steps)
    return steps


def _write(buffer: ReplayBuffer, rows: dict[str, np.ndarray], steps: int) -> None:
    """Writes ``steps`` rows at ``buffer.pos`` with wrap-around, updating ``pos`` and ``full``."""
    done = 0
    while done < steps:
        chunk = min(steps - done, buffer.buffer_size - buffer.pos)
        for name, arr in rows.items():
            getattr(buffer, name)[buffer.pos : buffer.pos + chunk] = arr[done : done + chunk]
        buffer.pos += chunk
        done += chunk
        if buffer.pos == buffer.buffer_size:
            buffer.full = True
            buffer.pos = 0


def _chronological(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    order = np.r_[buffer.pos : buffer.buffer_size, 0 : buffer.pos] if buffer.full else np.arange(buffer.pos)
    return {name: getattr(buffer, name)[order, 0] for name in FIELDS}


def save_buffer(buffer: ReplayBuffer, path: str | os.PathLike) -> Path:
    """Saves the buffer's transitions to ``path`` (npz + JSON header, no pickle), atomically."""
    _check_buffer(buffer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _chronological(buffer)
    obs_dim, act_dim = _dims(buffer)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "transitions": int(buffer.size()),
        "obs_shape": list(buffer.obs_shape),
        "action_dim": act_dim,
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        payload: dict[str, Any] = {"meta": np.array(json.dumps(meta)), **arrays}
        np.savez(f, **payload)
    return path


def load_buffer(path: str | os.PathLike, buffer: ReplayBuffer) -> int:
    """Replaces the buffer's contents with the transitions saved at ``path``; returns how many.

    If the file holds more transitions than the buffer's capacity, the most recent ones are kept.
    """
    _check_buffer(buffer)
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in FIELDS}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as err:
        raise ValueError(
            f"{path}: not a complete replay-buffer file ({type(err).__name__}: {err}); "
            "it may be truncated: save it again with dat.rl.buffer.save_buffer"
        ) from err
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{path}: header says {meta.get('format')!r} v{meta.get('version')}, "
            f"expected {FORMAT!r} v{VERSION}"
        )
    n = int(meta["transitions"])
    if tuple(meta["obs_shape"]) != tuple(buffer.obs_shape) or meta["action_dim"] != buffer.action_dim:
        raise ValueError(
            f"{path}: holds states {tuple(meta['obs_shape'])} and actions ({meta['action_dim']},), "
            f"but the buffer expects {tuple(buffer.obs_shape)} and ({buffer.action_dim},): "
            "build the model with the same state and action sizes"
        )
    if any(len(arr) != n for arr in arrays.values()):
        raise ValueError(f"{path}: arrays disagree with the header's {n} transitions; the file is corrupt")
    keep = min(n, buffer.buffer_size)
    buffer.pos, buffer.full = 0, False
    rows = {name: arr[n - keep :].reshape(keep, 1, *arr.shape[1:]) for name, arr in arrays.items()}
    _write(buffer, rows, keep)
    return keep


def state_stats(buffer: ReplayBuffer) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (population) of the buffer's states, per flattened dimension, as float32."""
    if buffer.size() == 0:
        raise ValueError(
            "state_stats: the replay buffer is empty; add episodes before fitting the normaliser"
        )
    states = buffer.observations[: buffer.size(), 0].reshape(buffer.size(), -1).astype(np.float64)
    return states.mean(axis=0).astype(np.float32), states.std(axis=0).astype(np.float32)
