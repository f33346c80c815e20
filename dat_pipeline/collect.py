"""Entry point: ``python collect.py [overrides]`` (or ``dat collect``): a dataset for offline training.

Plays ``collect.episodes`` episodes (this process: its shard's share) on the training tasks with uniformly
random actions, or an exported planner's plus noise, decoded greedily unless ``collect.do_sample``, and writes
them as a dataset (``dat.dialogue.dataset``: Minari data, transcripts, a card) at ``collect.out``. The action
space is prepared as for training (stage 1) and saved with the dataset (``<out>/projection``), so a training
run can act through the same one. Re-running the same command resumes; a larger ``collect.episodes`` grows
the dataset; ``-m collect.shard=0,...,k-1 collect.shards=k`` collects shards (then ``dat dataset merge``).
"""

from __future__ import annotations

from dat_pipeline import runtime  # process settings before torch (see runtime.py)
from dat_pipeline.entry import hydra_entry

import logging
import time
from dataclasses import replace

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from dat.config import CollectRunConfig, data_settings, validate
from dat.dialogue.collection import fill, missing
from dat.dialogue.dataset import Dataset, shard_folder
from dat.dialogue.scoring import OutageWatch
from dat.judges import make_judge
from dat.judges.rejudge import run_cache_dir
from dat.judges.reward import reward as judged_reward
from dat.lm.frozen import FrozenLM
from dat.seeding import seed_everything
from dat.stage1 import prepare_projection
from envs.scenarios import load_scenarios
from envs.vector_env import collector_envs

LOG = logging.getLogger("collect")


def collect(cfg: CollectRunConfig) -> dict[str, float]:
    """Fill this shard of the dataset ``cfg.collect`` names; return its figures (episodes, failures, speed)."""
    validate(cfg)
    c = cfg.collect
    folder = shard_folder(c.out, c.shard, c.shards)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.model.threads or torch.get_num_threads())
    tasks = load_scenarios(cfg.env.scenarios.train, ids=cfg.env.scenarios.ids, root=cfg.env.scenarios.root)
    lm = FrozenLM.load(cfg.model)
    projection = prepare_projection(cfg, lm, tasks, folder)
    judge = make_judge(cfg.judge, lm=lm, cache_dir=run_cache_dir(folder, cfg.judge.cache_dir))
    rules = replace(cfg.env, sampling=replace(cfg.env.sampling, do_sample=c.do_sample))
    envs = collector_envs(lm, projection, tasks, judge, rules,
                          lambda j, side: judged_reward(j, side, cfg.judge.weights),
                          c.batch_size, c.batch_size)
    card = {"settings": data_settings(cfg, projection, lm), "seed": cfg.seed, "shard": c.shard, "shards": c.shards,
            "behaviour": "random" if c.policy is None else f"{c.policy} + N(0, {c.noise}^2)",
            "decoding": {**OmegaConf.to_container(OmegaConf.structured(rules.sampling)), "seed": None},
            "rules": {k: v for k, v in OmegaConf.to_container(OmegaConf.structured(rules)).items()
                      if k not in ("sampling", "scenarios")},
            "scenarios": cfg.env.scenarios.train, "tasks": len(tasks)}
    data = Dataset.create(folder, card, envs.single_observation_space, envs.single_action_space)
    policy = "random" if c.policy is None else _planner(c.policy)
    todo = len(missing(data, c.episodes))
    bar = tqdm(total=len(data) + todo, initial=len(data), desc=f"collect {folder}", unit="episode", dynamic_ncols=True)
    started = time.perf_counter()
    lm_seconds = {"generate_seconds": 0.0, "states_seconds": 0.0}

    def committed(count: int, stats: dict[str, float]) -> None:
        for key in lm_seconds:
            lm_seconds[key] += stats.get(f"perf/{key}", 0.0)
        bar.update(count - bar.n)
        bar.set_postfix(reward=f"{stats['rollout/reward_mean']:.3f}",
                        per_hour=f"{stats['perf/dialogues_per_hour']:.0f}")

    try:
        fill(data, envs, policy, c.episodes, batch=c.batch_size, noise=0.0 if c.policy is None else c.noise,
             on_batch=committed, watch=OutageWatch(cfg.judge.outage_after))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    figures = {"episodes": float(len(data)), "played": float(todo), "failed_judgements": float(data.card[
        "failed_judgements"]), "seconds": seconds, "episodes_per_hour": todo / max(seconds, 1e-9) * 3600, **lm_seconds}
    runtime.say(LOG, f"dataset {folder}: {len(data)} episodes ({todo} played now, "
                         f"{figures['episodes_per_hour']:.0f} per hour, {data.card['failed_judgements']} failed "
                         "judgements kept in the transcripts)")
    if c.shards > 1:
        print(f"shard {c.shard} of {c.shards} done; when every shard is, merge them: dat dataset merge {c.out}")
    return figures


def _planner(export: str):
    from dat.rl.export import DATPolicy

    policy = DATPolicy.from_pretrained(export)

    def planner(states):
        return policy.act(torch.as_tensor(states, dtype=torch.float32)).numpy()

    return planner


def episodes(cfg: CollectRunConfig) -> float:
    """Collect, and return the dataset's size (what a sweep over shards reports)."""
    return collect(cfg)["episodes"]


main = hydra_entry("collect", CollectRunConfig, episodes)


if __name__ == "__main__":
    main()

