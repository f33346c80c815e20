"""Batched collection: N dialogues advance in lockstep, one batched LM call per half-round.

Per round, the unfinished dialogues share one ``lm.generate`` call for the steered lines (each with
its own prefix) and one for the partners' replies (no prefix); one ``lm.states`` call gives every
dialogue's next state (which is also the state of its next step). The judge then scores all
dialogues in one call. The rules of a dialogue live in :mod:`dat.dialogue`, which
``envs.DialogueEnv`` runs with a batch of one: with greedy decoding a dialogue collected here has
the transcript it would have alone in the env with the same seed and actions.

Episode ``i`` of a call gets the seed ``derive_seed(seed, "episode", offset + i)``; its task and
sides are drawn from that seed exactly as ``DialogueEnv.reset(seed=...)`` draws them, so every
condition (policy, zero action, no prefix) sees the same episodes and evaluation can pair them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dat.dialogue import Dialogue, DialogueTask, EnvConfig, Lockstep, draw_setup
from dat.episodes import Episode
from dat.llm import FrozenLM
from dat.prefix import UpProjection
from dat.seeding import derive_seed

Policy = Callable[[Any], Any] | str | None
"""states (B, hidden) -> actions (B, d) in [-1, 1]; or "zero", "random"; or None (no prefix)."""
RewardFn = Callable[[Any, int], "float | None"]


@dataclass(frozen=True)
class Verdict:
    """A judged dialogue: the steered agent's reward (None: failed) and the judgement as a dict."""

    reward: float | None
    judgement: dict[str, Any] | None


def default_reward(judgement: Any, steered: int) -> float | None:
    """A number passes through; a :class:`dat.judges.Judgement` goes through ``dat.judges.reward``."""
    if judgement is None or isinstance(judgement, (int, float)):
        return None if judgement is None else float(judgement)
    from dat.judges.reward import reward

    return reward(judgement, steered)


def judgement_dict(judgement: Any) -> dict[str, Any] | None:
    if judgement is None:
        return None
    if hasattr(judgement, "to_dict"):
        return judgement.to_dict()
    return {"value": judgement}


def score(judge: Callable, reward_fn: RewardFn, dialogues: Sequence[Dialogue]) -> list[Verdict]:
    """Judge all ``dialogues`` in one call and turn each judgement into the steered agent's reward."""
    if not dialogues:
        return []
    judgements = list(judge([d.record() for d in dialogues]))
    if len(judgements) != len(dialogues):
        raise ValueError(f"The judge returned {len(judgements)} judgements for {len(dialogues)} dialogues.")
    verdicts = []
    for d, j in zip(dialogues, judgements, strict=True):
        value = reward_fn(j, d.steered)
        ok = value is not None and np.isfinite(value)
        verdicts.append(Verdict(float(value) if ok else None, judgement_dict(j)))
    return verdicts


def pay(dialogue: Dialogue, verdict: Verdict) -> float:
    """The step reward for a verdict: the change since the last paid one (0.0 when it failed).

    With a terminal reward this is the judged reward itself; per turn the step rewards sum to it.
    """
    if verdict.reward is None:
        return 0.0
    step = verdict.reward - dialogue.paid
    dialogue.paid = verdict.reward
    return step


def _actions(policy: Policy, states: torch.Tensor, d: int, rngs: list[np.random.Generator]
             ) -> np.ndarray | None:
    if policy is None:
        return None
    if policy == "zero":
        return np.zeros((len(rngs), d), np.float32)
    if policy == "random":
        return np.stack([r.uniform(-1, 1, d) for r in rngs]).astype(np.float32)
    if isinstance(policy, str):
        raise ValueError(f"policy={policy!r} is not a callable, None, 'zero' or 'random'.")
    out = policy(states)
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else np.asarray(out)
    if out.shape != (len(rngs), d) or not np.all(np.isfinite(out)):
        raise ValueError(f"The policy returned actions of shape {out.shape} (or non-finite values); "
                         f"expected finite ({len(rngs)}, {d}).")
    return out.astype(np.float32)


def policy_name(policy: Policy) -> str:
    if policy is None or isinstance(policy, str):
        return str(policy).lower()
    return getattr(policy, "__name__", type(policy).__name__)


def collect(
    lm: FrozenLM,
    projection: UpProjection | None,
    tasks: Sequence[DialogueTask],
    policy: Policy,
    n: int,
    cfg: EnvConfig,
    judge: Callable,
    seed: int,
    *,
    reward_fn: RewardFn = default_reward,
    noise: float = 0.0,
    offset: int = 0,
    batch_size: int | None = None,
    keep_failed: bool = False,
    stats: dict[str, float] | None = None,
    task_order: Sequence[int] | None = None,
) -> list[Episode]:
    """Run ``n`` dialogues (``batch_size`` at a time, default all) and return them as episodes.

    ``noise`` adds N(0, noise²) exploration to the policy's actions (clipped to [-1, 1]; not to None).
    ``task_order`` fixes the task of each episode (indices into ``tasks``, one per episode; sides are
    still drawn from the episode seed), e.g. K episodes per scenario for evaluation.
    Episodes whose judgement failed are dropped unless ``keep_failed``; ``stats``, when given, receives
    ``rollout/…`` and ``perf/…`` metrics (including how many were dropped).
    """
    if not tasks:
        raise ValueError("collect() needs at least one task.")
    action_dim = projection.cfg.action_dim if projection is not None else 0
    if policy is not None and projection is None:
        raise ValueError("A steered collection needs an up-projection; pass policy=None to run unsteered.")
    lockstep = Lockstep(lm, projection, cfg)
    start = time.perf_counter()
    episodes: list[Episode] = []
    if task_order is not None and (len(task_order) != n or not all(0 <= i < len(tasks) for i in task_order)):
        raise ValueError(f"task_order needs {n} indices into the {len(tasks)} tasks.")
    size = batch_size or n
    for first in range(0, n, size):
        chunk = range(first, min(first + size, n))
        seeds = [derive_seed(seed, "episode", offset + i) for i in chunk]
        order = [task_order[i] for i in chunk] if task_order is not None else None
        episodes += _run_batch(lockstep, tasks, policy, action_dim, seeds, judge, reward_fn, noise, seed, order)
    kept = [e for e in episodes if keep_failed or not e.judgement_failed]
    if stats is not None:
        stats.update(_metrics(episodes, len(episodes) - len(kept), lockstep, time.perf_counter() - start))
    return kept


def _metrics(episodes: list[Episode], dropped: int, lockstep: Lockstep, elapsed: float) -> dict[str, float]:
    rewards = [e.reward for e in episodes if e.reward is not None]
    elapsed = max(elapsed, 1e-9)
    return {
        "rollout/episodes": float(len(episodes)),
        "rollout/dropped_failed_judgements": float(dropped),
        "rollout/reward_mean": float(np.mean(rewards)) if rewards else float("nan"),
        "rollout/length_mean": float(np.mean([len(e) for e in episodes])),
        "rollout/left_rate": float(np.mean([e.left_by is not None for e in episodes])),
        "rollout/truncated_rate": float(np.mean([bool(e.truncated[-1]) for e in episodes])),
        "perf/rollout_seconds": elapsed,
        "perf/dialogues_per_hour": len(episodes) / elapsed * 3600,
        "perf/generated_tokens_per_s": lockstep.counts["generated_tokens"] / elapsed,
        **{f"perf/{k}": float(v) for k, v in lockstep.counts.items()},
    }


def _run_batch(lockstep: Lockstep, tasks, policy: Policy, action_dim: int, seeds: list[int], judge,
               reward_fn: RewardFn, noise: float, seed: int, order: list[int] | None = None) -> list[Episode]:
    cfg = lockstep.cfg
    setups = [draw_setup(np.random.default_rng(s), len(tasks), cfg) for s in seeds]
    if order is not None:
        setups = [(i, steered, opens) for i, (_, steered, opens) in zip(order, setups, strict=True)]
    dialogues = [Dialogue.open(tasks[i], steered, opens, cfg) for i, steered, opens in setups]
    action_rngs = [np.random.default_rng(derive_seed(s, "actions")) for s in seeds]
    key = seeds[0]  # generation streams of this batch
    lockstep.start(dialogues, derive_seed(seed, "generate", key, "open"))
    lockstep.observe(dialogues)
    steps: list[list[dict]] = [[] for _ in dialogues]
    failed = [False] * len(dialogues)
    last: list[Verdict | None] = [None] * len(dialogues)
    active = list(range(len(dialogues)))
    for turn in range(cfg.max_turns):
        if not active:
            break
        batch = [dialogues[i] for i in active]
        states = torch.stack([d.state for d in batch])  # type: ignore[misc]
        actions = _actions(policy, states, action_dim, [action_rngs[i] for i in active])
        if actions is not None and noise > 0:
            jitter = np.stack([action_rngs[i].normal(0.0, noise, action_dim) for i in active])
            actions = actions + jitter.astype(np.float32)
        if actions is not None:
            actions = np.clip(actions, -1.0, 1.0)
        lockstep.step(batch, None if actions is None else torch.from_numpy(actions),
                      (derive_seed(seed, "generate", key, turn, "steered"),
                       derive_seed(seed, "generate", key, turn, "partner")))
        verdicts = score(judge, reward_fn, batch) if cfg.reward_per_turn else [None] * len(batch)
        next_states = lockstep.observe(batch)
        for j, (i, d) in enumerate(zip(active, batch, strict=True)):
            verdict = verdicts[j]
            if verdict is not None:
                failed[i] |= verdict.reward is None
                last[i] = verdict
            steps[i].append({
                "state": states[j].numpy(), "next_state": next_states[j].numpy(),
                "action": actions[j] if actions is not None else np.full(action_dim, np.nan, np.float32),
                "reward": pay(d, verdict) if verdict is not None else 0.0,
                "done": d.terminated, "truncated": d.truncated,
            })
        active = [i for i in active if not dialogues[i].done]
    finals = score(judge, reward_fn, dialogues) if not cfg.reward_per_turn else None
    episodes = []
    for i, d in enumerate(dialogues):
        verdict = finals[i] if finals is not None else last[i]
        assert verdict is not None  # every dialogue takes at least one step
        if finals is not None:
            steps[i][-1]["reward"] = pay(d, verdict)
            failed[i] |= verdict.reward is None
        episodes.append(_episode(d, steps[i], verdict, failed[i], seeds[i], policy))
    return episodes


def _episode(d: Dialogue, steps: list[dict], verdict: Verdict, failed: bool, seed: int, policy: Policy
             ) -> Episode:
    return Episode(
        record=d.record(),
        states=np.stack([s["state"] for s in steps]).astype(np.float32),
        actions=np.stack([s["action"] for s in steps]).astype(np.float32),
        rewards=np.array([s["reward"] for s in steps], np.float32),
        next_states=np.stack([s["next_state"] for s in steps]).astype(np.float32),
        dones=np.array([s["done"] for s in steps], bool),
        truncated=np.array([s["truncated"] for s in steps], bool),
        judgement=verdict.judgement, reward=verdict.reward, task_id=d.task.id, steered=d.steered,
        seed=seed, partner_opens=d.partner_opens, judgement_failed=failed, left_by=d.left_by,
        policy=policy_name(policy),
    )
