"""Offline-RL check of dat.rl.td3bc.TD3BC on Pendulum-v1 with datasets generated here.

1. Train an SB3 TD3 expert online, keeping a checkpoint every ``checkpoint_every`` steps.
   expert = the best checkpoint; medium = the checkpoint closest to a third of the way from the
   random policy's return to the expert's (D4RL's "medium" is about a third of expert level).
2. Collect a dataset with each (behaviour = checkpoint actor + N(0, 0.1) noise in [-1, 1] space).
   Pendulum only truncates, so every episode is added with ``terminated=False``.
3. Train TD3+BC (α = 2.5) and plain TD3 (α = 0) offline from each dataset for several seeds,
   evaluating every ``eval_every`` steps on fixed evaluation seeds.
4. Compare with the behaviour return; also measure the update rate for DAT-sized inputs
   (576-d state, 64-d action, batch 256, default widths).

Expected (TD3+BC paper; measured on this kind of machine before): TD3+BC stays at the behaviour
return, plain offline TD3 falls below random (extrapolation error).

    python benchmarks/td3bc_pendulum.py            # full: ~12k expert steps, 10k offline steps, 3 seeds
    python benchmarks/td3bc_pendulum.py --quick    # short version used by the slow test
"""

from __future__ import annotations

import dat_pipeline  # noqa: F401  (process settings before torch: see dat_pipeline/runtime.py)

import argparse
import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import TD3
from stable_baselines3.common.noise import NormalActionNoise

from dat.rl.buffer import add_episode
from dat.rl.td3bc import TD3BC, AlgoConfig, NetArch

RESULTS = Path(__file__).resolve().parent / "results" / "td3bc_pendulum.json"
MAX_TORQUE = 2.0  # Pendulum-v1 acts in [-2, 2]; datasets and policies use [-1, 1]
EVAL_SEEDS = [10_000 + i for i in range(10)]


@dataclass
class BenchConfig:
    """Sizes of one benchmark run (the defaults are the full run)."""

    expert_steps: int = 12_000
    """Online TD3 environment steps for the expert."""
    expert_net: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the online expert."""
    checkpoint_every: int = 1_000
    """Steps between expert checkpoints (candidates for expert and medium)."""
    episodes: int = 100
    """Episodes (200 steps each) per dataset."""
    behaviour_noise: float = 0.1
    """Gaussian noise std added to the behaviour actions in [-1, 1] space."""
    offline_steps: int = 10_000
    """Offline gradient steps per run."""
    eval_every: int = 2_500
    """Offline steps between evaluations."""
    offline_net: list[int] = field(default_factory=lambda: [256, 256])
    """Hidden widths of the offline actor and critics."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Offline training seeds."""


QUICK = BenchConfig(
    expert_steps=8_000,
    expert_net=[64, 64],
    episodes=50,
    offline_steps=3_000,
    eval_every=1_500,
    offline_net=[64, 64],
    seeds=[0],
)


def act_batch(actor: th.nn.Module, obs: np.ndarray) -> np.ndarray:
    with th.no_grad():
        return actor(th.as_tensor(obs, dtype=th.float32)).numpy()


def rollout(actor: th.nn.Module | None, seeds: list[int], noise: float = 0.0, rng_seed: int = 0) -> dict:
    """Runs one episode per seed in lockstep; actor None = uniform random. Returns transitions and returns."""
    envs = [gym.make("Pendulum-v1") for _ in seeds]
    obs = np.stack([env.reset(seed=s)[0] for env, s in zip(envs, seeds, strict=True)])
    rng = np.random.default_rng(rng_seed)
    steps: list[tuple[np.ndarray, ...]] = []
    done = False
    while not done:
        if actor is None:
            act = rng.uniform(-1, 1, (len(envs), 1))
        else:
            act = np.clip(act_batch(actor, obs) + noise * rng.standard_normal((len(envs), 1)), -1, 1)
        results = [env.step(MAX_TORQUE * a) for env, a in zip(envs, act, strict=True)]
        nxt = np.stack([r[0] for r in results])
        rew = np.array([r[1] for r in results], dtype=np.float32)
        steps.append((obs, nxt, act.astype(np.float32), rew))
        done = any(r[2] or r[3] for r in results)
        obs = nxt
    obs_a, nxt_a, act_a, rew_a = (np.stack(x, axis=1) for x in zip(*steps, strict=True))
    return {"obs": obs_a, "next_obs": nxt_a, "actions": act_a, "rewards": rew_a, "returns": rew_a.sum(axis=1)}


def evaluate(actor: th.nn.Module | None) -> float:
    """Mean return of the deterministic policy over the fixed evaluation seeds."""
    return float(rollout(actor, EVAL_SEEDS)["returns"].mean())


def train_expert(cfg: BenchConfig, seed: int = 0) -> tuple[dict[int, th.nn.Module], dict[int, float]]:
    """Online SB3 TD3 on Pendulum; returns the checkpoint actors and their evaluation returns."""
    env = gym.make("Pendulum-v1")
    model = TD3(
        "MlpPolicy",
        env,
        learning_rate=1e-3,
        learning_starts=1_000,
        seed=seed,
        device="cpu",
        action_noise=NormalActionNoise(np.zeros(1), 0.1 * np.ones(1)),
        policy_kwargs={"net_arch": list(cfg.expert_net)},
    )
    actors: dict[int, th.nn.Module] = {}
    returns: dict[int, float] = {}
    for step in range(cfg.checkpoint_every, cfg.expert_steps + 1, cfg.checkpoint_every):
        model.learn(cfg.checkpoint_every, reset_num_timesteps=False)
        actor = copy.deepcopy(model.actor)
        actors[step] = actor.eval()
        returns[step] = evaluate(actor)
    return actors, returns


def offline_run(data: dict, alpha: float, seed: int, cfg: BenchConfig) -> list[float]:
    """Trains TD3BC from a dataset; returns the evaluation returns at each ``eval_every``."""
    algo = AlgoConfig(
        alpha=alpha,
        net_arch=NetArch(list(cfg.offline_net), list(cfg.offline_net)),
        buffer_size=data["rewards"].size,
    )
    env = gym.make("Pendulum-v1")
    model = TD3BC.from_config(
        algo,
        observation_space=env.observation_space,
        action_space=gym.spaces.Box(-1, 1, (1,), np.float32),
        seed=seed,
    )
    assert model.replay_buffer is not None
    for i in range(len(data["rewards"])):
        add_episode(
            model.replay_buffer,
            data["obs"][i],
            data["next_obs"][i],
            data["actions"][i],
            data["rewards"][i],
            terminated=False,
        )
    model.fit_normalizer()
    curve = []
    for _ in range(cfg.offline_steps // cfg.eval_every):
        model.learn_offline(cfg.eval_every)
        curve.append(evaluate(model.actor.eval()))
    return curve


def update_throughput(
    obs_dim: int = 576, action_dim: int = 64, batch_size: int = 256, updates: int = 200
) -> dict:
    """TD3+BC updates per second on random data for DAT-sized inputs (1 thread, default AlgoConfig)."""
    algo = AlgoConfig(batch_size=batch_size, buffer_size=4096)
    model = TD3BC.from_config(
        algo,
        observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (action_dim,), np.float32),
        seed=0,
    )
    assert model.replay_buffer is not None
    rng = np.random.default_rng(0)
    for _ in range(64):
        obs = rng.standard_normal((64, obs_dim))
        add_episode(
            model.replay_buffer, obs, obs, rng.uniform(-1, 1, (64, action_dim)), rng.standard_normal(64)
        )
    model.fit_normalizer()
    model.learn_offline(20)
    start = time.perf_counter()
    model.learn_offline(updates)
    rate = updates / (time.perf_counter() - start)
    return {
        "obs_dim": obs_dim,
        "action_dim": action_dim,
        "batch_size": batch_size,
        "net_arch": asdict(algo.net_arch),
        "updates_per_s": round(rate, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def run(cfg: BenchConfig, out: Path | None = RESULTS, throughput: bool = True) -> dict[str, Any]:
    """The whole benchmark; writes JSON to ``out`` (if given) and returns the same dict."""
    th.set_num_threads(1)
    start = time.time()
    random_return = float(rollout(None, EVAL_SEEDS, rng_seed=1)["returns"].mean())
    actors, ckpt_returns = train_expert(cfg)
    expert_step = max(ckpt_returns, key=lambda s: ckpt_returns[s])
    goal = random_return + (ckpt_returns[expert_step] - random_return) / 3
    medium_step = min(
        (s for s in ckpt_returns if s < expert_step),
        key=lambda s: abs(ckpt_returns[s] - goal),
        default=min(ckpt_returns),
    )
    result: dict[str, Any] = {
        "config": asdict(cfg),
        "random_return": random_return,
        "expert_training": {
            "checkpoint_returns": ckpt_returns,
            "expert_step": expert_step,
            "medium_step": medium_step,
        },
        "datasets": {},
        "offline": {},
    }
    for i, (name, step) in enumerate([("expert", expert_step), ("medium", medium_step)]):
        seeds = list(range(1_000 * (i + 1), 1_000 * (i + 1) + cfg.episodes))
        data = rollout(actors[step], seeds, noise=cfg.behaviour_noise, rng_seed=i)
        result["datasets"][name] = {
            "checkpoint_step": step,
            "transitions": int(data["rewards"].size),
            "behaviour_return": float(data["returns"].mean()),
            "behaviour_return_std": float(data["returns"].std()),
        }
        result["offline"][name] = {}
        for label, alpha in [("td3bc", 2.5), ("td3", 0.0)]:
            curves = [offline_run(data, alpha, seed, cfg) for seed in cfg.seeds]
            finals = [c[-1] for c in curves]
            result["offline"][name][label] = {
                "alpha": alpha,
                "curves": curves,
                "final": finals,
                "final_mean": float(np.mean(finals)),
            }
    result["checks"] = comparison(result)
    if throughput:
        result["throughput"] = update_throughput()
    result["wall_time_s"] = round(time.time() - start, 1)
    result["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def comparison(result: dict[str, Any]) -> dict[str, Any]:
    """The outcome, with fixed margins in return units (a 10-episode Pendulum evaluation varies by ~±50).

    - expert data: TD3+BC within 100 of the behaviour return (or better);
    - medium data: TD3+BC within 200 of the behaviour return (no collapse);
    - plain TD3 collapses: at least 300 below the behaviour return on both datasets.
    """
    off, ds = result["offline"], result["datasets"]
    gap = {
        name: {label: off[name][label]["final_mean"] - ds[name]["behaviour_return"] for label in off[name]}
        for name in off
    }
    return {
        "gap_to_behaviour": gap,
        "td3bc_expert_reaches_behaviour": gap["expert"]["td3bc"] >= -100,
        "td3bc_medium_no_collapse": gap["medium"]["td3bc"] >= -200,
        "td3_collapses": all(gap[name]["td3"] <= -300 for name in gap),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short version (small nets, one seed)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON results")
    parser.add_argument("--no-throughput", action="store_true", help="skip the update-rate measurement")
    args = parser.parse_args()
    result = run(QUICK if args.quick else BenchConfig(), out=args.out, throughput=not args.no_throughput)
    print(
        json.dumps({k: result[k] for k in ("random_return", "datasets", "checks", "wall_time_s")}, indent=2)
    )
    print(json.dumps(result.get("throughput", {})))


if __name__ == "__main__":
    main()
