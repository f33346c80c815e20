"""Entry point: ``python train.py [overrides]``, or ``-m`` for a sweep. The only wiring code.

``build_run``: stage 1 prepares the up-projection (loads a saved one, reuses a cached behaviour basis
or self-cloned projection, or trains it), then the judge, the vector envs and TD3+BC (resumed from
the last complete checkpoint). ``run_round``: stage 2, one round of collect -> TD3+BC updates ->
held-out evaluation against the unsteered model and a zero action -> log -> checkpoint -> export.
Re-running the same command resumes from the last complete round. ``main`` returns the final
held-out gain over the unsteered model, so a Hydra sweeper can optimise it.
"""

from __future__ import annotations

from dat_pipeline import runtime  # process settings before torch (see runtime.py)
from dat_pipeline.baselines import best_constant, held_out_scores
from dat_pipeline.entry import hydra_entry

import json
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from tqdm import tqdm

from dat.action.projection import UpProjection
from dat.config import TrainConfig, data_settings, datasets, identity, validate
from dat.dialogue.dataset import Dataset, differences
from dat.dialogue.episodes import load_episodes, save_episodes
from dat.dialogue.rollout import collect
from dat.dialogue.scoring import JudgeOutage, OutageWatch, outage
from dat.eval import constant
from dat.eval.conditions import (
    EVALUATED,
    eval_metrics,
    evaluate_conditions,
    reward_line,
    transcript_rows,
)
from dat.eval.report import learning_curves, write_report
from dat.judges import make_judge
from dat.judges.rejudge import FailedJudgements, Rejudged, run_cache_dir
from dat.judges.reward import reward as judged_reward
from dat.lm.frozen import FrozenLM
from dat.rl.buffer import add_episode
from dat.rl.checkpoint import (
    RunState,
    changed_settings,
    clean_staging,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from dat.rl.export import DATPolicy, model_card
from dat.rl.td3bc import TD3BC, OfflineEnv
from dat.seeding import derive_seed, seed_everything
from dat.stage1 import prepare_projection
from dat.tracking import make_tracker
from envs.scenarios import load_scenarios
from envs.vector_env import DialogueVectorEnv, collector_envs

LOG = logging.getLogger("train")
"""The run's record in ``<run folder>/train.log`` (Hydra's file handler; ``conf/train.yaml`` keeps INFO off the console,
where the progress bar is): resumes, checkpoints a killed run left half-written, one line per round
with its figures, and the end."""


@dataclass
class Run:
    """A training run, built once: what each round reads and updates."""

    cfg: TrainConfig
    out: Path
    lm: FrozenLM
    projection: UpProjection
    train_envs: DialogueVectorEnv | None
    """Where rounds collect; None when the run trains offline from datasets (``dataset=...``)."""
    eval_envs: DialogueVectorEnv
    judge: Any
    algo: TD3BC
    state: RunState
    tracker: Any
    reward_fn: Any
    train_tasks: list = field(default_factory=list)
    """The training tasks, on which the best constant action is chosen."""
    chosen_constant: dict | None = None
    """The best constant action's record once chosen (``best_constant``)."""
    baselines: dict = field(default_factory=dict)
    """The baselines' evaluation episodes (they do not depend on the planner): the same every round, played once."""
    judge_before: dict = field(default_factory=dict)
    """The judge's counters before a resume (its totals continue from them)."""
    failed: FailedJudgements = field(init=False)
    """The failed judgements of the training episodes, judged again between rounds."""
    watch: OutageWatch = field(init=False)
    """Failed judgements in a row, over the whole run (collection and evaluation): an outage stops it."""

    def __post_init__(self) -> None:
        self.failed = FailedJudgements(self.out / "episodes")
        self.watch = OutageWatch(self.cfg.judge.outage_after)

    def best_constant(self) -> dict | None:
        """The best constant action on the training tasks (``dat.eval.constant``; None: left out), chosen at the
        first evaluation, so that nothing is played before the first round's collection; cached on disk, so a
        resumed run reads it back."""
        cfg = self.cfg
        if self.chosen_constant is None and cfg.loop.constant_per_task > 0:
            best = best_constant(cfg, self.lm, self.projection, self.train_tasks[: cfg.loop.constant_tasks],
                                 self.judge, self.reward_fn,
                                 cfg.loop.constant_per_task, derive_seed(cfg.seed, "best constant"),
                                 cfg.loop.batch_size, log=LOG)
            if best is not None:
                runtime.say(LOG, f"best constant action on the training tasks: {best['label']} {best['action']} "
                                 f"(mean reward {best['means'][best['label']]:.3f} over {best['episodes']} episodes; "
                                 + ", ".join(f"{k} {v:.3f}" for k, v in best["means"].items()) + ")")
            self.chosen_constant = best
        return self.chosen_constant

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    def policy(self, states) -> np.ndarray:
        """The planner's deterministic actions for a batch of states."""
        actions, _ = self.algo.predict(np.asarray(states, dtype=np.float32), deterministic=True)
        return actions


def build_run(cfg: TrainConfig, out: Path, bar: tqdm) -> Run:
    """Stage 1 and everything stage 2 needs: model, tasks, up-projection, judge, vector envs, TD3+BC
    (resumed from the last complete checkpoint when there is one) and the tracker."""
    scenarios = cfg.env.scenarios  # read (and checked) before the model loads
    train_tasks = load_scenarios(scenarios.train, ids=scenarios.ids, root=scenarios.root)
    eval_tasks = load_scenarios(scenarios.eval, root=scenarios.root)[: cfg.loop.eval_tasks]
    lm = FrozenLM.load(cfg.model)
    projection = prepare_projection(cfg, lm, train_tasks, out)
    judge = make_judge(cfg.judge, lm=lm, cache_dir=run_cache_dir(out, cfg.judge.cache_dir))

    def reward_fn(judgement, steered: int) -> float | None:
        return judged_reward(judgement, steered, cfg.judge.weights)

    # Collection and evaluation are loops over Gymnasium vector envs (loop.batch_size dialogues in lockstep);
    # evaluation plays all its conditions in one stream, so its env is sized for all of them. Training from
    # datasets collects nothing.
    offline = [Dataset(folder) for folder in datasets(cfg)]
    for data in offline:
        _check_dataset(data, data_settings(cfg, projection, lm))
    train_envs = None if offline else collector_envs(lm, projection, train_tasks, judge, cfg.env, reward_fn,
                                                     cfg.loop.episodes_per_round, cfg.loop.batch_size)
    eval_envs = collector_envs(lm, projection, eval_tasks, judge, cfg.env, reward_fn,
                               len(eval_tasks) * cfg.loop.eval_per_task * len(EVALUATED), cfg.loop.batch_size)
    obs_space = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (cfg.prefix.planner_dim,), np.float32)
    checkpoints = out / "checkpoints"
    for orphan in clean_staging(checkpoints):
        runtime.say(LOG, f"removed {orphan.name}, a checkpoint a killed run left half-written")
    found = latest_checkpoint(checkpoints) if cfg.resume else None
    if found is not None:
        algo, state = load_checkpoint(found, TD3BC, OfflineEnv(obs_space, act_space), cfg.algo.device)
        runtime.say(LOG, f"resuming from {found} (round {state.round} of {cfg.loop.rounds})")
        state.settings = identity(cfg)  # the same, or forced (force_resume): later resumes follow this config
    else:
        if not cfg.resume and latest_checkpoint(checkpoints) is not None:
            raise FileExistsError(f"{checkpoints} holds a checkpoint and resume=false; choose another "
                                  "output directory (hydra.run.dir=...) or delete it.")
        algo = TD3BC.from_config(cfg.algo, observation_space=obs_space, action_space=act_space, seed=cfg.seed)
        state = RunState(judge_cache=str(run_cache_dir(out, cfg.judge.cache_dir)), settings=identity(cfg))
        for data in offline:  # a resumed run finds them in its checkpoint's buffer
            state.episodes += load_dataset(algo, data)
    tracker = make_tracker(_sweep_grouped(cfg.logger), _plain(cfg), out, cfg.name, state.wandb_id)
    state.wandb_id = tracker.run_id
    bar.n = state.round
    last = state.history[-1] if state.history else {}
    before = {k: v for k, v in last.items() if k.startswith("judge/") and k not in RATIOS}
    return Run(cfg, out, lm, projection, train_envs, eval_envs, judge, algo, state, tracker, reward_fn,
               train_tasks=train_tasks, judge_before=before, baselines=saved_baselines(out, state.round))


def run_round(run: Run, rnd: int, bar: tqdm) -> dict[str, float]:
    """One round of stage 2: collect -> TD3+BC updates -> (held-out evaluation) -> log, checkpoint, export."""
    cfg, algo, state, out = run.cfg, run.algo, run.state, run.out
    started = time.perf_counter()
    seed_everything(derive_seed(cfg.seed, "round", rnd))  # a resumed round replays exactly
    # ...and so starts, as an uninterrupted one, with no stored keys and values or memoised results (reused ones
    # differ from a fresh read by float rounding, so what a round reuses must not depend on the rounds before a resume).
    run.lm.forget()
    stats = _collect_round(run, rnd, bar) if run.train_envs is not None else {}
    bar.set_description(f"round {rnd + 1}/{cfg.loop.rounds}: train")
    bar.set_postfix(episodes=state.episodes, transitions=algo.replay_buffer.size(),
                    updates=algo.updates + cfg.algo.gradient_steps_per_round)
    if cfg.algo.normalize_states:
        algo.fit_normalizer()
    updates = time.perf_counter()
    train_metrics = algo.learn_offline(cfg.algo.gradient_steps_per_round)
    updates = time.perf_counter() - updates
    metrics = {**stats, **train_metrics,
               "perf/updates_per_s": cfg.algo.gradient_steps_per_round / max(updates, 1e-9),
               "rollout/buffer_transitions": float(algo.replay_buffer.size())}
    if rnd == cfg.loop.rounds - 1 or (rnd + 1) % cfg.loop.eval_every == 0:
        bar.set_description(f"round {rnd + 1}/{cfg.loop.rounds}: evaluate")
        metrics.update(_evaluate(run, rnd))
        bar.set_postfix(episodes=state.episodes, updates=algo.updates,
                        eval=f"{metrics.get('eval/policy/mean', float('nan')):.3f}",
                        unsteered=f"{metrics.get('eval/unsteered/mean', float('nan')):.3f}")
    metrics.update(_judge_metrics(run.judge, run.judge_before))  # after the evaluation: the checkpoint counts it
    metrics["perf/round_seconds"] = time.perf_counter() - started
    LOG.info(round_line(rnd, cfg.loop.rounds, state.episodes, metrics))
    run.tracker.log(metrics, step=rnd)
    state.history.append({"round": rnd, **metrics})
    state.round = rnd + 1
    save_checkpoint(run.checkpoints, algo, state)
    export = DATPolicy.from_trained(algo, run.projection, cfg.model.name, cfg.env.state_layer, cfg.env.state_pool)
    export.save_pretrained(out / "export")
    reports = sorted((out / "eval").glob("round-*/evaluation.md"))
    (out / "export" / "README.md").write_text(model_card(export, _card_facts(cfg, state),
                                                         reports[-1].read_text() if reports else None))
    learning_curves(state.history, out / "learning_curves.png")
    run.tracker.image("learning_curves", out / "learning_curves.png", step=rnd)
    run.tracker.artifact(f"{cfg.name}-planner", "model", out / "export", aliases=[f"round-{rnd + 1}"])
    run.tracker.artifact(f"{cfg.name}-checkpoint", "checkpoint", run.checkpoints / f"round-{rnd + 1:04d}",
                         aliases=[f"round-{rnd + 1}"])
    return metrics


def saved_baselines(out: Path, rounds_done: int) -> dict[str, list]:
    """The baselines' episodes of the last evaluation a resumed run checkpointed, read back from its report.

    An uninterrupted run plays the baselines once and keeps them in memory; a resumed one reads them here, so its
    evaluations play the planner alone, in the batches the uninterrupted run plays them in (another batch
    composition changes the states by float rounding), and judge none of them again. Empty for a fresh run.
    """
    done = [p for p in sorted((out / "eval").glob("round-*")) if int(p.name.removeprefix("round-")) < rounds_done]
    folder = done[-1] / "episodes" if done else None
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: load_episodes(p) for p in sorted(folder.iterdir()) if p.is_dir() and p.name != "policy"}


def _collect_round(run: Run, rnd: int, bar: tqdm) -> dict[str, float]:
    """An online round's collection: episodes (random in round 0, else the policy plus noise) saved, the judged
    ones added to the buffer, earlier failed judgements judged again; returns the rollout metrics."""
    cfg, state, out = run.cfg, run.state, run.out
    bar.set_description(f"round {rnd + 1}/{cfg.loop.rounds}: collect")
    explore = "random" if rnd == 0 and cfg.loop.random_first_round else run.policy
    stats: dict[str, float] = {}
    folder = out / "episodes" / f"round-{rnd:04d}"
    try:
        episodes = collect(run.train_envs, explore, cfg.loop.episodes_per_round, derive_seed(cfg.seed, "collect", rnd),
                           noise=0.0 if explore == "random" else cfg.algo.exploration_noise, stats=stats,
                           keep_failed=True, watch=run.watch)
    except JudgeOutage as stopped:  # what the round finished is written, with each failure's cause; a re-run
        save_episodes(_fresh(folder), [e for _, e in stopped.episodes])  # plays the round again from its start
        raise
    save_episodes(_fresh(folder), episodes)  # failed ones too, with the cause
    failed = [e for e in episodes if e.judgement_failed]
    if len(failed) > cfg.loop.max_failed_share * len(episodes):
        raise outage([e.judgement for e in failed]) if len(failed) == len(episodes) else JudgeOutage(
            f"{len(failed)} of {len(episodes)} judgements of round {rnd} failed (more than loop.max_failed_share="
            f"{cfg.loop.max_failed_share}); first cause: {_cause(failed)}. Fix the judge and re-run: the "
            "episodes are kept and judged again.")
    for e in episodes:
        if not e.judgement_failed:
            add_episode(run.algo.replay_buffer, e.states, e.next_states, e.actions, e.rewards,
                        terminated=bool(e.dones[-1]))
    stats["rollout/rejudged"] = float(_rejudge(run, rnd))
    state.episodes += len(episodes)
    return stats


def load_dataset(algo: TD3BC, data: Dataset) -> int:
    """Add every judged episode of ``data`` to the replay buffer, in index order; return how many."""
    states, actions, rewards, next_states, dones, _, lengths = data.transitions()
    if len(states) > algo.replay_buffer.buffer_size:
        raise ValueError(f"{data.folder} holds {len(states)} transitions but algo.buffer_size="
                         f"{algo.replay_buffer.buffer_size}; raise algo.buffer_size to at least {len(states)}.")
    start = 0
    for length in lengths:
        end = start + int(length)
        add_episode(algo.replay_buffer, states[start:end], next_states[start:end], actions[start:end],
                    rewards[start:end], terminated=bool(dones[end - 1]))
        start = end
    return len(lengths)


def _check_dataset(data: Dataset, wanted: dict) -> None:
    """A dataset trains this run only if its states, actions and rewards mean what this run's do."""
    changed = differences(data.settings, wanted)
    if changed:
        raise ValueError(f"dataset={data.folder} was collected with other settings than this run's "
                         f"({', '.join(changed)}): its states, actions or rewards would mean something else here. "
                         "Train with the settings it was "
                         f"collected with (its card: {data.folder / 'card.json'}; its action space: "
                         f"prefix.path={data.folder / 'projection'}).")


def round_line(rnd: int, rounds: int, episodes: int, metrics: dict[str, float]) -> str:
    """One round in a line: episodes so far, transitions, time, and the held-out rewards when it evaluated."""
    line = (f"round {rnd + 1}/{rounds}: {episodes} episodes, {metrics['rollout/buffer_transitions']:.0f} "
            f"transitions, {metrics['perf/round_seconds']:.0f} s")
    rewards = reward_line(metrics)
    return line + (f"; held-out reward {rewards}" if rewards else "")


def _rejudge(run: Run, rnd: int) -> int:
    """Judge again the failed episodes of the rounds before ``rnd`` and add those that succeed to the
    buffer, with the re-judgements ``dat rescore --run`` logged; returns how many were added.

    ``dat.judges.rejudge`` judges and logs (``episodes/round-NNNN/rejudged.jsonl``); an episode is added
    once, its key kept in the run state (saved with the buffer in the next checkpoint). After a crash
    before that checkpoint the restored buffer lacks it and so does the state: it is added again from
    the log, not judged again. Per-turn rewards cannot be rebuilt from one judgement, so with
    ``env.reward_per_turn`` failed episodes stay out.
    """
    if run.cfg.env.reward_per_turn:
        return 0
    run.failed.rejudge(run.judge, run.cfg.judge.weights, before=rnd)
    added = set(run.state.recovered)
    waiting: dict[str, dict[int, Rejudged]] = {}
    for entry in run.failed.recovered(before=rnd):
        if entry.key not in added:
            waiting.setdefault(entry.round, {})[entry.seed] = entry
    count = 0
    for name, entries in waiting.items():  # only these rounds' arrays are read
        for e in load_episodes(run.failed.episodes / name):
            if e.seed not in entries or not e.judgement_failed:
                continue
            rewards = np.zeros_like(e.rewards)
            rewards[-1] = entries[e.seed].reward  # a terminal reward: 0 on every step but the last
            add_episode(run.algo.replay_buffer, e.states, e.next_states, e.actions, rewards,
                        terminated=bool(e.dones[-1]))
            run.state.recovered.append(entries[e.seed].key)
            count += 1
    return count


def _cause(episodes) -> str:
    return next((e.judgement.get("cause") for e in episodes if isinstance(e.judgement, dict)
                 and e.judgement.get("cause")), "unknown")


def _evaluate(run: Run, rnd: int) -> dict[str, float]:
    """The planner against the baselines on the held-out tasks; report and episodes."""
    cfg = run.cfg
    chosen = run.best_constant()
    best = None if chosen is None else constant.policy(chosen)
    seed = derive_seed(cfg.seed, "eval")

    def score_again(runs):  # the same episodes scored by the held-out judges, beside the training reward
        return held_out_scores(cfg.loop.held_out_judges, runs, run.lm, run_cache_dir(run.out, cfg.judge.cache_dir))

    summary, runs = evaluate_conditions(run.eval_envs, run.policy, cfg.loop.eval_per_task, seed, run.baselines,
                                        best_constant=best, watch=run.watch,
                                        score_again=score_again if cfg.loop.held_out_judges else None)
    report = run.out / "eval" / f"round-{rnd:04d}"
    meta = _metadata(cfg, rnd, run.lm)
    if chosen is not None:
        meta["best constant"] = f"{chosen['label']} {chosen['action']} (chosen on the training tasks)"
    if cfg.loop.held_out_judges:
        meta["held-out judges"] = ", ".join(f"{n} (reward@{n})" for n in cfg.loop.held_out_judges)
    write_report(summary, report, meta)
    for name, played in runs.items():  # kept, so other conditions can be paired with them later
        save_episodes(_fresh(report / "episodes" / name), played)
    run.tracker.table("eval/transcripts", *transcript_rows(runs), step=rnd)
    run.tracker.image("eval/chart", report / "evaluation.png", step=rnd)
    return eval_metrics(summary)


def train(cfg: TrainConfig, output_dir: Path | None = None) -> dict[str, float]:
    """Train a planner as ``cfg`` says; return the final evaluation metrics."""
    validate(cfg)  # every value checked before the model loads or anything is written
    out = Path(output_dir or cfg.output_dir or HydraConfig.get().runtime.output_dir)
    _check_resume(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.model.threads or torch.get_num_threads())
    bar = tqdm(total=cfg.loop.rounds, desc="stage 1: up-projection", unit="round", dynamic_ncols=True)
    run = build_run(cfg, out, bar)
    metrics: dict[str, float] = {}
    try:
        for rnd in range(run.state.round, cfg.loop.rounds):
            metrics = run_round(run, rnd, bar)
            bar.update(1)
    finally:
        bar.close()
        run.tracker.summary({k: v for k, v in metrics.items() if k.startswith("eval/")})
        run.tracker.finish()
    final = next((h for h in reversed(run.state.history) if "eval/policy/mean" in h), metrics)
    _print_outro(out)
    return {k: float(v) for k, v in final.items() if isinstance(v, int | float)}


def _check_resume(cfg: TrainConfig, out: Path) -> None:
    """Refuse to continue a checkpoint made with other settings (``dat.config.identity``), before any work."""
    found = latest_checkpoint(out / "checkpoints") if cfg.resume and not cfg.force_resume else None
    if found is None:
        return
    saved = json.loads((found / "state.json").read_text()).get("settings", {})
    changed = changed_settings(saved, identity(cfg))
    if changed:
        raise ValueError(f"{out} holds a run made with other settings ({', '.join(changed)}); resuming would mix "
                         "them. Start a new run in another folder (hydra.run.dir=...), or pass force_resume=true "
                         "to continue this one anyway.")


def _plain(cfg: TrainConfig) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def _fresh(folder: Path) -> Path:
    """An empty folder: a round interrupted before its checkpoint is collected again, not twice."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


RATIOS = {"judge/failure_rate": ("judge/failures", "judge/calls"), "judge/latency_s": ("judge/latency_total_s",
                                                                                     "judge/calls")}


def _sweep_grouped(logger):
    """The logger settings, with a sweep's jobs grouped under the sweep folder's name unless a group is set."""
    from hydra.types import RunMode

    if logger.group is not None or not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return logger
    return replace(logger, group=Path(HydraConfig.get().sweep.dir).name)


def _card_facts(cfg: TrainConfig, state: RunState) -> dict[str, str]:
    """What the model card says about how the planner was made."""
    basis = f" (basis {cfg.behaviours.name})" if cfg.prefix.kind == "behaviours" else ""
    return {"judge": f"{cfg.judge.backend}, reward weights {dict(cfg.judge.weights.weights)}",
            "action basis": f"{cfg.prefix.kind}{basis}",
            "scenarios": f"train {cfg.env.scenarios.train}, held out {cfg.env.scenarios.eval}",
            "training": f"{state.round} rounds, {state.episodes} episodes, TD3+BC alpha={cfg.algo.alpha}, "
                        f"seed {cfg.seed}" + (f", offline from {', '.join(datasets(cfg))}" if datasets(cfg) else "")}


def _judge_metrics(judge, before: dict[str, float]) -> dict[str, float]:
    """The judge's running totals for the whole run: this process's counts plus ``before`` (what the run
    counted before a resume), ratios recomputed from the sums."""
    now = dict(judge.metrics()) if hasattr(judge, "metrics") else {}
    total = {k: v + before.get(k, 0.0) if k not in RATIOS else v for k, v in now.items()}
    for key, (num, den) in RATIOS.items():
        if key in total and den in total:
            total[key] = total[num] / total[den] if total[den] else 0.0
    return total


def _metadata(cfg: TrainConfig, rnd: int, lm: FrozenLM) -> dict:
    return {"model": lm.name, "judge": f"{cfg.judge.backend} ({', '.join(cfg.judge.weights.weights)})",
            "prefix": f"{cfg.prefix.kind}, {cfg.prefix.position}, L={cfg.prefix.tokens}, norm={cfg.prefix.norm}",
            "round": rnd, "episodes": f"{cfg.loop.eval_per_task} per held-out task and condition", "seed": cfg.seed,
            "scenarios": cfg.env.scenarios.eval}


def _print_outro(out: Path) -> None:
    LOG.info(f"finished: planner exported to {out / 'export'}")
    print(f"\noutputs: {out}\n  export (DATPolicy.from_pretrained): {out / 'export'}\n"
          f"  checkpoints: {out / 'checkpoints'}\n  episodes: {out / 'episodes'}\n"
          f"  evaluation: {out / 'eval'}\n  learning curves: {out / 'learning_curves.png'}"
          + (f"\n  log: {out / 'train.log'}" if (out / "train.log").is_file() else ""))
    reports = sorted((out / "eval").glob("round-*/evaluation.md"))
    if reports:
        print(f"\nheld-out evaluation ({reports[-1].parent.name}):\n")
        print(reports[-1].read_text())


OBJECTIVE = "eval/policy/diff"
"""What ``main`` returns, for Hydra sweepers (e.g. Optuna) to maximise: the final held-out reward of the
planner minus the unsteered model's (paired, mean over episodes)."""


def objective(cfg: TrainConfig) -> float:
    """Train, and return the sweepers' objective (``OBJECTIVE``)."""
    return train(cfg).get(OBJECTIVE, float("nan"))


main = hydra_entry("train", TrainConfig, objective)


if __name__ == "__main__":
    main()
