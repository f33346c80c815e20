"""Collection: a plain loop over a Gymnasium vector env of dialogues, like a cleanrl collector.

``collect`` plays ``n`` episodes on ``envs`` (``envs.vector_env.DialogueVectorEnv`` with autoreset
disabled, as ``gym.make_vec("dat/Dialogue-v0", ..., autoreset_mode="Disabled")`` makes it): the
sub-envs advance in lockstep, one batched LM call per half-round and one batched judge call for
the dialogues that end; a sub-env whose dialogue ended takes the next episode. The rules of a
dialogue live in :mod:`dat.dialogue.rules`, which ``envs.DialogueEnv`` runs with a batch of one: with
greedy decoding a dialogue collected here has the transcript it would have alone in the env with
the same seed and actions.

Episode ``i`` of a call gets the seed ``derive_seed(seed, "episode", offset + i)`` and is started
with ``reset(seed=...)`` in its sub-env, which draws its task and sides exactly as
``DialogueEnv.reset(seed=...)`` draws them, so every condition (policy, zero action, no prefix)
sees the same episodes and evaluation can pair them. This module never imports ``envs``: the caller
builds the env (``dat`` is the library, ``envs`` its Gymnasium face).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dat.dialogue.episodes import Episode
from dat.dialogue.scoring import JudgeOutage, OutageWatch
from dat.seeding import derive_seed

Policy = Callable[[Any], Any] | str | None
"""states (B, hidden) -> actions (B, d) in [-1, 1]; or "zero", "random"; or None (no prefix); or ``PROMPTED``."""
PROMPTED = "prompted"
"""The prompted baseline: no prefix, the steered agent's goal restated before each of its turns (the dialogue is
opened with ``prompted``, see ``EnvConfig.goal_reminder``)."""
def _actions(policy: Policy, states: torch.Tensor, d: int, rngs: list[np.random.Generator]
             ) -> np.ndarray | None:
    if policy is None or policy == PROMPTED:
        return None
    if policy == "zero":
        return np.zeros((len(rngs), d), np.float32)
    if policy == "random":
        return np.stack([r.uniform(-1, 1, d) for r in rngs]).astype(np.float32)
    if isinstance(policy, str):
        raise ValueError(f"policy={policy!r} is not a callable, None, 'zero', 'random' or {PROMPTED!r}.")
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
    envs,
    policy: Policy,
    n: int,
    seed: int,
    *,
    noise: float = 0.0,
    offset: int = 0,
    keep_failed: bool = False,
    stats: dict[str, float] | None = None,
    task_order: Sequence[int] | None = None,
    indices: Sequence[int] | None = None,
    watch: OutageWatch | None = None,
) -> list[Episode]:
    """Play ``n`` episodes on the vector env ``envs`` (``num_envs`` at a time) and return them in order.

    ``policy`` maps the states of the running dialogues ``(B, hidden)`` to actions; "zero" and
    "random" are constant and uniform actions, None plays without any prefix (NaN actions).
    ``noise`` adds N(0, noise²) exploration to the policy's actions (clipped to [-1, 1]).
    ``task_order`` fixes the task of each episode (indices into ``envs.tasks``, one per episode;
    sides are still drawn from the episode seed), e.g. K episodes per scenario for evaluation.
    Episodes whose judgement failed are dropped unless ``keep_failed``; ``stats``, when given,
    receives ``rollout/…`` and ``perf/…`` metrics (including how many were dropped). ``watch`` counts
    failed judgements in a row (a fresh ``OutageWatch`` when None; pass the run's own so that a streak spans
    calls): once it sees an outage, ``JudgeOutage`` is raised, naming the cause, with the episodes finished so far
    (failed ones included) numbered as below, for the caller to write. ``indices`` (n of them) numbers the
    episodes instead of ``offset + i``: a dataset shard plays every k-th index (``dat.dialogue.dataset``).
    """
    _check(envs, [policy], n, task_order)
    if indices is not None and len(indices) != n:
        raise ValueError(f"collect got {len(indices)} indices for {n} episodes.")
    numbers = list(indices) if indices is not None else [offset + i for i in range(n)]
    specs = [Spec(derive_seed(seed, "episode", numbers[i]), task_order[i] if task_order else None, policy)
             for i in range(n)]
    try:
        episodes, used, elapsed = _play(envs, specs, noise, watch or OutageWatch())
    except JudgeOutage as stopped:
        stopped.episodes = [(numbers[i], e) for i, e in stopped.episodes]
        raise
    kept = [e for e in episodes if keep_failed or not e.judgement_failed]
    if stats is not None:
        stats.update(_metrics(episodes, len(episodes) - len(kept), used, elapsed))
    return kept


def collect_conditions(envs, policies: dict[str, Policy], n: int, seed: int, *,
                       task_order: Sequence[int] | None = None, watch: OutageWatch | None = None
                       ) -> dict[str, list[Episode]]:
    """Play the same ``n`` episodes under every policy of ``policies``, all in one lockstep stream.

    Episode ``i`` of every condition has the seed ``collect`` would give it, so the conditions stay
    paired; interleaving them fills the vector env's batch (evaluation's small per-condition batches
    otherwise leave most of it empty). Failed judgements are kept (evaluation counts them); an outage stops it
    as it stops ``collect`` (``watch``).
    """
    _check(envs, list(policies.values()), n, task_order)
    seeds = [derive_seed(seed, "episode", i) for i in range(n)]
    specs = [Spec(seeds[i], task_order[i] if task_order else None, policy)
             for i in range(n) for policy in policies.values()]
    episodes, _, _ = _play(envs, specs, 0.0, watch or OutageWatch())
    k = len(policies)
    return {name: episodes[c::k] for c, name in enumerate(policies)}


@dataclass(frozen=True)
class Spec:
    """One episode to play: its seed (task and sides drawn from it), an optional fixed task, the policy."""

    seed: int
    task: int | None
    policy: Policy


def _check(envs, policies: Sequence[Policy], n: int, task_order: Sequence[int] | None) -> None:
    from gymnasium.vector import AutoresetMode

    if envs.metadata.get("autoreset_mode") != AutoresetMode.DISABLED:
        raise ValueError("collect() needs a vector env made with autoreset_mode='Disabled' (it starts each "
                         "episode itself, so that every condition plays the same ones).")
    if task_order is not None and (len(task_order) != n or not all(0 <= i < len(envs.tasks) for i in task_order)):
        raise ValueError(f"task_order needs {n} indices into the {len(envs.tasks)} tasks.")
    if any(p is not None and p != PROMPTED for p in policies) and envs.projection is None:
        raise ValueError("A steered collection needs an up-projection; pass policy=None to run unsteered.")


def _play(envs, specs: Sequence[Spec], noise: float, watch: OutageWatch
          ) -> tuple[list[Episode], dict[str, int], float]:
    """Play every spec (``num_envs`` at a time, a freed sub-env takes the next one); the episodes in spec
    order, the LM calls they took and the seconds. ``watch`` sees every ending judgement; the outage it raises
    carries the finished episodes as ``(spec index, episode)``."""
    width, d = envs.num_envs, envs.single_action_space.shape[0]
    counts, start = dict(envs.counts), time.perf_counter()
    rngs = [np.random.default_rng(derive_seed(spec.seed, "actions")) for spec in specs]
    playing: list[int | None] = [None] * width  # the spec each sub-env plays
    steps: dict[int, list[dict]] = {}
    failed: dict[int, bool] = {}
    finished: dict[int, Episode] = {}
    waiting = iter(range(len(specs)))
    obs = _start(envs, playing, waiting, specs, steps, failed, None)
    while any(i is not None for i in playing):
        live = [j for j, i in enumerate(playing) if i is not None]
        actions = np.full((width, d), np.nan, np.float32)
        for policy, group in _by_policy(specs, playing, live):
            chosen = _actions(policy, torch.from_numpy(obs[group]), envs.action_dim, [rngs[playing[j]] for j in group])
            if chosen is None:
                continue
            if noise > 0:
                chosen = chosen + np.stack([rngs[playing[j]].normal(0.0, noise, d) for j in group]).astype(np.float32)
            actions[group] = np.clip(chosen, -1.0, 1.0)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        ended = [j for j in live if terminated[j] or truncated[j]]
        for j in live:
            i = playing[j]
            failed[i] |= bool(infos["judgement_failed"][j])
            steps[i].append({"state": obs[j], "next_state": next_obs[j], "action": actions[j],
                             "reward": float(rewards[j]), "done": bool(terminated[j]), "truncated": bool(truncated[j])})
            if terminated[j] or truncated[j]:
                finished[i] = _episode(infos, j, steps.pop(i), failed.pop(i), specs[i].seed, specs[i].policy)
                playing[j] = None
        try:
            watch.see([infos["judgement"][j] for j in ended], [infos["episode_reward"][j] is None for j in ended])
        except JudgeOutage as stopped:
            stopped.episodes = sorted(finished.items())
            raise
        obs = _start(envs, playing, waiting, specs, steps, failed, next_obs)
    used = {k: v - counts.get(k, 0) for k, v in envs.counts.items()}
    return [finished[i] for i in range(len(specs))], used, time.perf_counter() - start


def _by_policy(specs: Sequence[Spec], playing: list[int | None], live: list[int]) -> list[tuple[Policy, list[int]]]:
    """The live sub-envs grouped by the policy of the episode they play (first appearance order)."""
    groups: list[tuple[Policy, list[int]]] = []
    for j in live:
        policy = specs[playing[j]].policy
        for known, members in groups:
            if known is policy or (isinstance(known, str) and known == policy):
                members.append(j)
                break
        else:
            groups.append((policy, [j]))
    return groups


def _start(envs, playing: list[int | None], waiting, specs: Sequence[Spec], steps: dict, failed: dict,
           obs: np.ndarray | None) -> np.ndarray:
    """Start the next waiting episodes in the free sub-envs (one reset call); return the observations."""
    mask = np.zeros(envs.num_envs, bool)
    for j in range(envs.num_envs):
        if playing[j] is None:
            i = next(waiting, None)
            if i is None:
                break
            playing[j], mask[j], steps[i], failed[i] = i, True, [], False
    if not mask.any():
        return obs
    chosen = [specs[i] if i is not None and mask[j] else None for j, i in enumerate(playing)]
    options: dict[str, Any] = {"reset_mask": mask}
    if any(c is not None and c.task is not None for c in chosen):
        options["task_index"] = [c.task if c is not None else None for c in chosen]
    if any(c is not None and c.policy == PROMPTED for c in chosen):
        options["prompted"] = [c is not None and c.policy == PROMPTED for c in chosen]
    fresh, _ = envs.reset(seed=[c.seed if c is not None else None for c in chosen], options=options)
    return fresh


def _metrics(episodes: list[Episode], dropped: int, counts: dict[str, float], elapsed: float) -> dict[str, float]:
    rewards = [e.reward for e in episodes if e.reward is not None]
    elapsed = max(elapsed, 1e-9)
    return {
        "rollout/episodes": float(len(episodes)),
        "rollout/failed_judgements": float(sum(e.judgement_failed for e in episodes)),
        "rollout/dropped_failed_judgements": float(dropped),
        "rollout/reward_mean": float(np.mean(rewards)) if rewards else float("nan"),
        "rollout/length_mean": float(np.mean([len(e) for e in episodes])),
        "rollout/left_rate": float(np.mean([e.left_by is not None for e in episodes])),
        "rollout/truncated_rate": float(np.mean([bool(e.truncated[-1]) for e in episodes])),
        "perf/rollout_seconds": elapsed,
        "perf/dialogues_per_hour": len(episodes) / elapsed * 3600,
        "perf/generated_tokens_per_s": counts["generated_tokens"] / elapsed,
        **{f"perf/{k}": float(v) for k, v in counts.items()},
    }


def _episode(infos: dict, env: int, steps: list[dict], failed: bool, seed: int, policy: Policy) -> Episode:
    """The finished episode of sub-env ``env`` from its steps and the ending step's infos."""
    record = infos["record"][env]
    return Episode(
        record=record,
        states=np.stack([s["state"] for s in steps]).astype(np.float32),
        actions=np.stack([s["action"] for s in steps]).astype(np.float32),
        rewards=np.array([s["reward"] for s in steps], np.float32),
        next_states=np.stack([s["next_state"] for s in steps]).astype(np.float32),
        dones=np.array([s["done"] for s in steps], bool),
        truncated=np.array([s["truncated"] for s in steps], bool),
        judgement=infos["judgement"][env], reward=infos["episode_reward"][env], task_id=infos["task_id"][env],
        steered=int(infos["steered"][env]), seed=seed, partner_opens=bool(infos["partner_opens"][env]),
        judgement_failed=failed, left_by=infos["left_by"][env], policy=policy_name(policy),
    )
