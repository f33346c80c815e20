"""The baselines an evaluation sets a planner against that need the run's own pieces: the best constant action,
chosen on the training tasks with the run's model, action space and judge (``dat.eval.constant``), and the
held-out judges that score the same episodes again (``dat evaluate held_out_judges=[rule,local]``)."""

from __future__ import annotations

from dat_pipeline import runtime
from dat_pipeline.rescore import load_config

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from dat.dialogue.episodes import Episode
from dat.dialogue.scoring import OutageWatch
from dat.eval import constant
from dat.judges import make_judge
from dat.judges.reward import reward
from dat.lm.frozen import FrozenLM
from dat.lm.loading import artefact_folder
from envs.vector_env import collector_envs

UNSCORED = ("api_key_env", "timeout_s", "budget_s", "max_retries", "backoff_s", "backoff_max_s", "concurrency")
"""Judge settings that do not change a score: left out of the cache key."""
HASHED = ("base_url",)
"""Judge settings that change a score but may hold a token (``http://user:TOKEN@host``): kept as a hash."""


def constant_settings(cfg: Any, lm: FrozenLM, projection, tasks: Sequence) -> dict[str, Any]:
    """What decides the best constant action besides its candidates: the model, the action space, the judge and
    its reward, the training tasks, the dialogue rules and decoding."""
    from dat.dialogue.dataset import fingerprint

    judge = {"backend": cfg.judge.backend, "weights": asdict(cfg.judge.weights)}
    section = getattr(cfg.judge, cfg.judge.backend, None)
    if section is not None:
        judge[cfg.judge.backend] = {k: hashlib.sha256(str(v).encode()).hexdigest()[:16] if k in HASHED else v
                                    for k, v in asdict(section).items() if k not in UNSCORED}
    return {"model": lm.name, "dtype": cfg.model.dtype, "action_space": fingerprint(projection), "judge": judge,
            "tasks": [t.id for t in tasks], "env": asdict(cfg.env)}


def best_constant(cfg: Any, lm: FrozenLM, projection, tasks: Sequence, judge: Callable, reward_fn: Callable,
                  per_task: int, seed: int, batch_size: int,
                  log: logging.Logger | None = None) -> dict[str, Any] | None:
    """The best constant action on ``tasks`` (the training tasks), chosen once per setting and cached beside the
    model's other artefacts (``dat.eval.constant``); None when ``per_task`` is 0 or there is no action space.
    ``log``: the entry point's logger, told when the choice is played rather than read back."""
    if per_task < 1 or projection is None:
        return None
    n = len(tasks) * per_task * len(constant.candidates(projection.cfg.planner_dim))
    envs = collector_envs(lm, projection, tasks, judge, cfg.env, reward_fn, n, batch_size)
    return constant.choose(envs, per_task, seed, constant_settings(cfg, lm, projection, tasks),
                           artefact_folder(cfg.model) / "best_constant", watch=OutageWatch(cfg.judge.outage_after),
                           announce=None if log is None else (lambda message: runtime.say(log, message)))


def check_presets(names: Sequence[str], where: str) -> None:
    """Each held-out judge preset loads and validates (``where``: the config field that names them), before any
    work: a typo is named now, not after an evaluation was played."""
    for name in names:
        try:
            load_config([f"judge={name}"]).validate()
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


def held_out_scores(names: Sequence[str], runs: Mapping[str, Sequence[Episode]], lm: FrozenLM,
                    cache_dir) -> dict[str, dict[str, np.ndarray]]:
    """Each held-out judge's reward for every episode of every condition, as ``reward@<judge>`` scores (NaN: a
    failed judgement), the judges named as ``judge=NAME`` names a preset (``dat_pipeline/conf/judge``)."""
    scores: dict[str, dict[str, np.ndarray]] = {c: {} for c in runs}
    for name in names:
        judge_cfg = load_config([f"judge={name}"])
        judge = make_judge(judge_cfg, lm=lm, cache_dir=cache_dir)
        for condition, episodes in runs.items():
            judgements = judge([e.record for e in episodes])
            values = [reward(j, e.steered, judge_cfg.weights) for j, e in zip(judgements, episodes, strict=True)]
            scores[condition][f"reward@{name}"] = np.array([np.nan if v is None else v for v in values], float)
    return scores
