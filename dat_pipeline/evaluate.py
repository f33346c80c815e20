"""Entry point: ``python evaluate.py [policy=<export>] [overrides]``: a planner against the baselines.

Runs K episodes per held-out scenario for each condition: the exported planner (when given), the
unsteered model (no prefix), a zero action, the best constant action (chosen on the training tasks), the
prompted model (no prefix, its goal restated before each of its turns) and a uniform random action
(``dat.eval.conditions``). Episode ``i`` has the same task, sides and seed in every condition, so the comparison
is paired; intervals and p-values resample scenarios (``dat.eval.stats``). Every condition reports how often its
steered lines restate their goal, stay in character and differ (``dat.eval.parroting``); ``held_out_judges``
scores the same episodes with other judges, side by side with the run's. Writes ``evaluation.json`` / ``.md`` /
``.png`` and logs to W&B.
"""

from __future__ import annotations

from dat_pipeline import runtime  # process settings before torch (see runtime.py)
from dat_pipeline.baselines import best_constant, check_presets, held_out_scores
from dat_pipeline.entry import hydra_entry

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from dat.config import LoopConfig, SharedConfig, validate
from dat.dialogue.episodes import save_episodes
from dat.dialogue.rollout import collect_conditions
from dat.dialogue.scoring import OutageWatch
from dat.eval import constant
from dat.eval.conditions import (
    BASELINE,
    condition_policies,
    eval_metrics,
    eval_order,
    reward_line,
    summarize,
    transcript_rows,
)
from dat.eval.report import markdown_table, write_report
from dat.judges import make_judge
from dat.judges.reward import reward as judged_reward
from dat.lm.frozen import FrozenLM
from dat.seeding import derive_seed, seed_everything
from dat.stage1 import prepare_projection
from dat.tracking import make_tracker
from envs.scenarios import load_scenarios, per_scenario
from envs.vector_env import collector_envs

LOG = logging.getLogger("evaluate")
"""The run's record in ``<run folder>/evaluate.log``: what was measured, how long it took, where the report is."""

CONDITIONS = ("policy", BASELINE, "zero", constant.NAME, "prompted", "random")


@dataclass
class EvaluateConfig(SharedConfig):
    """What to evaluate and how much, over the groups evaluation shares with training (model, prefix and
    how it is made, env, judge, logger). Nothing of training's own (algorithm, rounds, resume) is read."""

    batch_size: int = LoopConfig.batch_size
    """Dialogues advanced together in one batched generation call (training's default, loop.batch_size)."""
    algo: Any = None
    """Ignored: set by shared presets (debug=tiny, experiment=...) for training."""
    loop: Any = None
    """Ignored: set by shared presets (debug=tiny, experiment=...) for training."""
    policy: str | None = None
    """Folder of an exported DATPolicy (train.py writes <run>/export); None evaluates the baselines only."""
    episodes_per_scenario: int = 2
    """K: episodes per held-out task and condition (each with its own seed, the same in every condition)."""
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    """Conditions to run: policy, unsteered, zero, best_constant, prompted, random (unsteered is the baseline and
    always runs)."""
    constant_per_task: int = LoopConfig.constant_per_task
    """Dialogues per training task each candidate of the best constant action plays (dat.eval.constant)."""
    constant_tasks: int | None = LoopConfig.constant_tasks
    """Choose the best constant action on the first N training tasks only (None: all of them)."""
    held_out_judges: list[str] = field(default_factory=list)
    """Judge presets (dat_pipeline/conf/judge: rule, local, ...) that score the same episodes again, reported
    beside the run's judge as ``reward@<name>``: a gain only the training judge sees stands out."""
    max_tasks: int | None = None
    """Evaluate on the first N tasks of the set only (None: all)."""
    tasks_per_scenario: int | None = None
    """Keep at most this many tasks (character pairs) per scenario, e.g. 1 for one task per scenario."""

    def check_inputs(self) -> None:
        """Evaluation's own inputs, checked before anything is written (``runtime.StartChecks``): the planner
        export, the conditions and the held-out judge presets."""
        if self.policy:
            from dat.rl.export import DATPolicy

            DATPolicy.check_source(self.policy)
        unknown = set(self.conditions) - set(CONDITIONS)
        if unknown:
            raise ValueError(f"conditions {sorted(unknown)} are unknown; choose from {list(CONDITIONS)}.")
        check_presets(self.held_out_judges, "held_out_judges")


def evaluate(cfg: EvaluateConfig, output_dir: Path | None = None) -> dict[str, float]:
    """Run every condition on the same episodes and write the report; return flat eval metrics."""
    validate(cfg)  # every value checked before the model loads or anything is written
    cfg.check_inputs()  # (the command line ran both before Hydra made the run folder: runtime.StartChecks)
    out = Path(output_dir or cfg.output_dir or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    policy = None
    if cfg.policy:
        from dat.rl.export import DATPolicy

        policy = DATPolicy.from_pretrained(cfg.policy)
        if policy.base_model != cfg.model.name:  # the planner only makes sense on the model it was trained on
            cfg = replace(cfg, model=replace(cfg.model, name=policy.base_model))
        # ... and reads the state it was trained on (the export says which), whatever env.state_* say.
        cfg = replace(cfg, env=replace(cfg.env, state_layer=policy.state_layer, state_pool=policy.state_pool))
    tasks = per_scenario(load_scenarios(cfg.env.scenarios.eval, root=cfg.env.scenarios.root),
                          cfg.tasks_per_scenario)[: cfg.max_tasks]  # read (and checked) before the model loads
    lm = FrozenLM.load(cfg.model)
    projection = policy.projection if policy is not None else prepare_projection(cfg, lm, tasks, out)
    judge = make_judge(cfg.judge, lm=lm, cache_dir=cfg.judge.cache_dir or out / "judge_cache")

    def reward_fn(judgement, steered: int) -> float | None:
        return judged_reward(judgement, steered, cfg.judge.weights)

    def planner(states):
        return policy.act(states.float()).numpy()

    best = None
    if constant.NAME in cfg.conditions:
        train_tasks = load_scenarios(cfg.env.scenarios.train, ids=cfg.env.scenarios.ids,
                                     root=cfg.env.scenarios.root)[: cfg.constant_tasks]
        best = best_constant(cfg, lm, projection, train_tasks, judge, reward_fn, cfg.constant_per_task,
                             derive_seed(cfg.seed, "best constant"), cfg.batch_size, log=LOG)
    policies = condition_policies(planner if policy is not None else None,
                                  None if best is None else constant.policy(best))
    wanted = [c for c in CONDITIONS if (c in cfg.conditions or c == BASELINE) and c in policies]
    order = eval_order(len(tasks), cfg.episodes_per_scenario)
    # the conditions share one lockstep stream: sized for all of them, it runs batch_size dialogues wide
    envs = collector_envs(lm, projection, tasks, judge, cfg.env, reward_fn, len(order) * len(wanted), cfg.batch_size)
    runtime.say(LOG, f"evaluate: {len(order)} episodes x {len(wanted)} conditions ({', '.join(wanted)}), "
                         f"{envs.num_envs} dialogues in lockstep")
    started = time.perf_counter()
    runs = collect_conditions(envs, {name: policies[name] for name in wanted}, len(order),
                              derive_seed(cfg.seed, "evaluate"), task_order=order,
                              watch=OutageWatch(cfg.judge.outage_after))
    seconds = time.perf_counter() - started
    extra = held_out_scores(cfg.held_out_judges, runs, lm, cfg.judge.cache_dir or out / "judge_cache")
    summary = summarize(runs, seed=cfg.seed, extra=extra, cue=cfg.env.opening_cue)
    meta = {
        "model": lm.name, "judge": _judge_name(cfg), "policy": cfg.policy or "none",
        "scenarios": f"{cfg.env.scenarios.eval} ({len(tasks)} tasks)",
        "episodes": f"{cfg.episodes_per_scenario} per task and condition ({len(order)} per condition)",
        "seed": cfg.seed, "sampling": _sampling(cfg), "turns": cfg.env.max_turns, "state_layer": cfg.env.state_layer,
        "state_pool": cfg.env.state_pool,
    }
    if best is not None:
        meta["best constant"] = f"{best['label']} {best['action']} (chosen on the training tasks)"
    if cfg.held_out_judges:
        meta["held-out judges"] = ", ".join(f"{n} (reward@{n})" for n in cfg.held_out_judges)
    paths = write_report(summary, out, meta)
    _save_transcripts(runs, out)
    metrics = eval_metrics(summary)
    metrics["perf/evaluate_seconds"] = seconds
    metrics.update({k: v for k, v in judge.metrics().items()} if hasattr(judge, "metrics") else {})
    tracker = make_tracker(cfg.logger, OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True),
                           out, f"{cfg.name}-evaluate")
    tracker.log(metrics, step=0)
    columns, rows = transcript_rows(runs)
    tracker.table("eval/transcripts", columns, rows, step=0)
    tracker.summary(metrics)
    tracker.finish()
    LOG.info(f"{seconds:.0f} s; reward {reward_line(metrics)}; report: {paths['markdown']}")
    print(f"\n{markdown_table(summary)}\nreport: {paths['markdown']}  chart: {paths['png']}")
    return metrics


def _judge_name(cfg: EvaluateConfig) -> str:
    backend = cfg.judge.backend
    model = {"api": cfg.judge.api.model, "local": cfg.judge.local.model or cfg.model.name,
             "embedding": "all-MiniLM-L6-v2", "rule": "rules"}.get(backend, "")
    return f"{backend} ({model}); reward = {dict(cfg.judge.weights.weights)}"


def _sampling(cfg: EvaluateConfig) -> str:
    s = cfg.env.sampling
    if not s.do_sample:
        return f"greedy, {s.max_new_tokens} tokens"
    return f"T={s.temperature}, top_p={s.top_p}, rep={s.repetition_penalty}, {s.max_new_tokens} tokens"


def _save_transcripts(runs, out: Path) -> None:
    for name, episodes in runs.items():
        folder = out / "episodes" / name
        shutil.rmtree(folder, ignore_errors=True)
        save_episodes(folder, episodes)


main = hydra_entry("evaluate", EvaluateConfig, evaluate)


if __name__ == "__main__":
    main()
