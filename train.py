"""Entry point: ``python train.py [overrides]``, or ``-m`` for a sweep. The only wiring code.

Stage 1 prepares the up-projection (loads a saved one, reuses the cached self-cloned one, or
trains it by self-cloning); stage 2 runs rounds of collect -> TD3+BC updates -> held-out evaluation
against the unsteered model and a zero action -> log -> checkpoint -> export. Re-running the same
command resumes from the last complete round.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: ~10x faster generation on 2 cores
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one progress bar: ours
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import shutil  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import hydra  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from tqdm import tqdm  # noqa: E402

from dat.config import TrainConfig, register_configs, to_config  # noqa: E402
from dat.dialogue.episodes import save_episodes  # noqa: E402
from dat.dialogue.rollout import collect  # noqa: E402
from dat.eval.conditions import eval_metrics, evaluate_conditions, transcript_rows  # noqa: E402
from dat.eval.report import learning_curves, write_report  # noqa: E402
from dat.judges import make_judge  # noqa: E402
from dat.judges.reward import reward as judged_reward  # noqa: E402
from dat.lm.frozen import FrozenLM  # noqa: E402
from dat.rl.buffer import add_episode  # noqa: E402
from dat.rl.checkpoint import RunState, latest_checkpoint, load_checkpoint, save_checkpoint  # noqa: E402
from dat.rl.export import DATPolicy  # noqa: E402
from dat.rl.td3bc import TD3BC, OfflineEnv  # noqa: E402
from dat.seeding import derive_seed, seed_everything  # noqa: E402
from dat.stage1 import prepare_projection  # noqa: E402
from dat.tracking import make_tracker  # noqa: E402
from envs.scenarios import load_scenarios  # noqa: E402
from envs.vector_env import collector_envs  # noqa: E402


def train(cfg: TrainConfig, output_dir: Path | None = None) -> dict[str, float]:
    """Train a planner as ``cfg`` says; return the final evaluation metrics."""
    out = Path(output_dir or cfg.output_dir or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.model.threads or torch.get_num_threads())
    bar = tqdm(total=cfg.loop.rounds, desc="stage 1: up-projection", unit="round", dynamic_ncols=True)

    lm = FrozenLM.load(cfg.model)
    scenarios = cfg.env.scenarios
    train_tasks = load_scenarios(scenarios.train, ids=scenarios.ids, root=scenarios.root)
    eval_tasks = load_scenarios(scenarios.eval, root=scenarios.root)[: cfg.loop.eval_tasks]
    projection = prepare_projection(cfg, lm, train_tasks, out)
    judge = make_judge(cfg.judge, lm=lm, cache_dir=cfg.judge.cache_dir or out / "judge_cache")

    def reward_fn(judgement, steered: int) -> float | None:
        return judged_reward(judgement, steered, cfg.judge.weights)

    # Collection and evaluation are loops over Gymnasium vector envs (loop.batch_size dialogues in lockstep).
    train_envs = collector_envs(lm, projection, train_tasks, judge, cfg.env, reward_fn, cfg.loop.episodes_per_round,
                                cfg.loop.batch_size)
    eval_envs = collector_envs(lm, projection, eval_tasks, judge, cfg.env, reward_fn,
                               len(eval_tasks) * cfg.loop.eval_per_task, cfg.loop.batch_size)
    obs_space = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (cfg.prefix.action_dim,), np.float32)
    checkpoints = out / "checkpoints"
    found = latest_checkpoint(checkpoints) if cfg.resume else None
    if found is not None:
        algo, state = load_checkpoint(found, TD3BC, OfflineEnv(obs_space, act_space), cfg.algo.device)
        tqdm.write(f"resuming from {found} (round {state.round} of {cfg.loop.rounds})")
    else:
        if not cfg.resume and latest_checkpoint(checkpoints) is not None:
            raise FileExistsError(f"{checkpoints} holds a checkpoint and resume=false; choose another "
                                  "output directory (hydra.run.dir=...) or delete it.")
        algo = TD3BC.from_config(cfg.algo, observation_space=obs_space, action_space=act_space, seed=cfg.seed)
        state = RunState(judge_cache=str(cfg.judge.cache_dir or out / "judge_cache"))
    tracker = make_tracker(cfg.logger, _plain(cfg), out, cfg.name, state.wandb_id)
    state.wandb_id = tracker.run_id
    bar.n = state.round
    metrics: dict[str, float] = {}
    baselines: dict = {}  # unsteered and zero-action eval episodes: the same every round

    def policy_fn(states) -> np.ndarray:
        actions, _ = algo.predict(np.asarray(states, dtype=np.float32), deterministic=True)
        return actions

    try:
        for rnd in range(state.round, cfg.loop.rounds):
            started = time.perf_counter()
            seed_everything(derive_seed(cfg.seed, "round", rnd))  # a resumed round replays exactly
            bar.set_description(f"round {rnd + 1}/{cfg.loop.rounds}: collect")
            explore = "random" if rnd == 0 and cfg.loop.random_first_round else policy_fn
            stats: dict[str, float] = {}
            episodes = collect(
                train_envs, explore, cfg.loop.episodes_per_round, derive_seed(cfg.seed, "collect", rnd),
                noise=0.0 if explore == "random" else cfg.algo.exploration_noise, stats=stats,
            )
            save_episodes(_fresh(out / "episodes" / f"round-{rnd:04d}"), episodes)
            for e in episodes:
                add_episode(algo.replay_buffer, e.states, e.next_states, e.actions, e.rewards,
                            terminated=bool(e.dones[-1]))
            state.episodes += len(episodes)
            bar.set_description(f"round {rnd + 1}/{cfg.loop.rounds}: train")
            bar.set_postfix(episodes=state.episodes, transitions=algo.replay_buffer.size(),
                            updates=algo._n_updates + cfg.algo.gradient_steps_per_round)
            if cfg.algo.normalize_states:
                algo.fit_normalizer()
            updates = time.perf_counter()
            train_metrics = algo.learn_offline(cfg.algo.gradient_steps_per_round)
            updates = time.perf_counter() - updates
            metrics = {**stats, **train_metrics, **_judge_metrics(judge),
                       "perf/updates_per_s": cfg.algo.gradient_steps_per_round / max(updates, 1e-9),
                       "rollout/buffer_transitions": float(algo.replay_buffer.size())}
            last = rnd == cfg.loop.rounds - 1
            if last or (rnd + 1) % cfg.loop.eval_every == 0:
                bar.set_description(f"round {rnd + 1}/{cfg.loop.rounds}: evaluate")
                summary, runs = evaluate_conditions(
                    eval_envs, policy_fn, cfg.loop.eval_per_task, derive_seed(cfg.seed, "eval"), baselines,
                )
                metrics.update(eval_metrics(summary))
                report = out / "eval" / f"round-{rnd:04d}"
                write_report(summary, report, _metadata(cfg, rnd, lm))
                for name, played in runs.items():  # kept, so other conditions can be paired with them later
                    save_episodes(_fresh(report / "episodes" / name), played)
                tracker.table("eval/transcripts", *transcript_rows(runs), step=rnd)
                bar.set_postfix(episodes=state.episodes, updates=algo._n_updates,
                                eval=f"{metrics.get('eval/policy/mean', float('nan')):.3f}",
                                unsteered=f"{metrics.get('eval/unsteered/mean', float('nan')):.3f}")
            metrics["perf/round_seconds"] = time.perf_counter() - started
            tracker.log(metrics, step=rnd)
            state.history.append({"round": rnd, **metrics})
            state.round = rnd + 1
            save_checkpoint(checkpoints, algo, state)
            DATPolicy.from_trained(algo, projection, cfg.model.name, cfg.env.state_layer,
                                   cfg.env.state_pool).save_pretrained(
                out / "export")
            learning_curves(state.history, out / "learning_curves.png")
            bar.update(1)
    finally:
        bar.close()
        tracker.summary({k: v for k, v in metrics.items() if k.startswith("eval/")})
        tracker.finish()
    final = next((h for h in reversed(state.history) if "eval/policy/mean" in h), metrics)
    _print_outro(out)
    return {k: float(v) for k, v in final.items() if isinstance(v, int | float)}


def _plain(cfg: TrainConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def _fresh(folder: Path) -> Path:
    """An empty folder: a round interrupted before its checkpoint is collected again, not twice."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _judge_metrics(judge) -> dict[str, float]:
    return dict(judge.metrics()) if hasattr(judge, "metrics") else {}


def _metadata(cfg: TrainConfig, rnd: int, lm: FrozenLM) -> dict:
    return {"model": lm.name, "judge": f"{cfg.judge.backend} ({', '.join(cfg.judge.weights.weights)})",
            "prefix": f"{cfg.prefix.kind}, {cfg.prefix.position}, L={cfg.prefix.tokens}, norm={cfg.prefix.norm}",
            "round": rnd, "episodes": f"{cfg.loop.eval_per_task} per held-out task and condition", "seed": cfg.seed,
            "scenarios": cfg.env.scenarios.eval}


def _print_outro(out: Path) -> None:
    print(f"\noutputs: {out}\n  export (DATPolicy.from_pretrained): {out / 'export'}\n"
          f"  checkpoints: {out / 'checkpoints'}\n  episodes: {out / 'episodes'}\n"
          f"  evaluation: {out / 'eval'}\n  learning curves: {out / 'learning_curves.png'}")
    reports = sorted((out / "eval").glob("round-*/evaluation.md"))
    if reports:
        print(f"\nheld-out evaluation ({reports[-1].parent.name}):\n")
        print(reports[-1].read_text())


register_configs()
OmegaConf.register_new_resolver("or_default", lambda value: value or "default", replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(to_config(cfg))


if __name__ == "__main__":
    main()
