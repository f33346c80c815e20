"""Entry point: ``python stability.py [policy=<export>] [overrides]``: instruction stability over a self-chat.

Plays ``rounds`` rounds (default 8) of a self-chat for every task of a probe set (default: the held-out
prompts of the shipped one, ``probes:eval``) and seed, under each condition (unsteered, a planner, a zero
and a random action, the system prompt repeated before the probe), branches the probe question off the
dialogue at every round of the steered agent and scores the answer with the prompt's test
(``dat.eval.stability``). Writes ``stability.json`` / ``.md`` / ``.png``, the probe answers and the main
dialogues, and logs to W&B. ``dat stability ...`` is the same from an installed package.
"""

from __future__ import annotations

from dat_pipeline import runtime  # process settings before torch (see runtime.py)
from dat_pipeline.entry import hydra_entry

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from tqdm import tqdm

from dat.config import SharedConfig, validate
from dat.eval import stability_report
from dat.eval.stability import CONDITIONS, make_conditions, measure
from dat.lm.frozen import FrozenLM
from dat.seeding import derive_seed, seed_everything
from dat.stage1 import prepare_projection
from dat.tracking import make_tracker
from envs.scenarios import load_scenarios, per_scenario

LOG = logging.getLogger("stability")
"""The run's record in ``<run folder>/stability.log``: what was measured, how long it took, where the report is."""


@dataclass
class StabilityConfig(SharedConfig):
    """What to measure and how much, over the groups shared with training (model, prefix, env's decoding and
    state, logger). The probe score is always the prompt's own test (``judge`` is not read)."""

    algo: Any = None
    """Ignored: set by shared presets (debug=tiny, experiment=...) for training."""
    loop: Any = None
    """Ignored: set by shared presets (debug=tiny, experiment=...) for training."""
    policy: str | None = None
    """Folder of an exported DATPolicy (train.py writes <run>/export); None measures the baselines only."""
    tasks: str = "probes:eval"
    """Probe set (``probes``, ``probes:train``, ``probes:eval`` or a folder in the probe-set layout)."""
    rounds: int = 8
    """Rounds of each self-chat; the probe is asked at every one of them."""
    seeds: int = 1
    """Self-chats per task and condition, each with its own sampling seed."""
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS))
    """Conditions: policy, unsteered, zero, random, repeat (policy only with policy=...)."""
    tasks_per_prompt: int | None = None
    """Keep at most this many tasks (partner and topic pairings) per prompt (None: all)."""
    max_tasks: int | None = None
    """Measure on the first N tasks only (None: all)."""
    batch_size: int = 16
    """Dialogues advanced together in one batched generation call."""


def stability(cfg: StabilityConfig, output_dir: Path | None = None) -> dict[str, float]:
    """Measure, write the report and log it; return the overall means per condition."""
    validate(cfg)
    if cfg.rounds < 1 or cfg.seeds < 1 or cfg.batch_size < 1:
        raise ValueError(f"rounds={cfg.rounds}, seeds={cfg.seeds} and batch_size={cfg.batch_size} must be >= 1.")
    make_conditions(cfg.conditions, "planner" if cfg.policy else None)  # names checked before any work
    policy = None
    if cfg.policy:
        from dat.rl.export import DATPolicy

        DATPolicy.check_source(cfg.policy)
        policy = DATPolicy.from_pretrained(cfg.policy)
        cfg = replace(cfg, model=replace(cfg.model, name=policy.base_model),
                      env=replace(cfg.env, state_layer=policy.state_layer, state_pool=policy.state_pool))
    out = Path(output_dir or cfg.output_dir or HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    tasks = per_scenario(load_scenarios(cfg.tasks), cfg.tasks_per_prompt)[: cfg.max_tasks]
    if not tasks or not hasattr(tasks[0], "probe_question"):
        raise ValueError(f"tasks={cfg.tasks!r} holds no probe tasks; use probes, probes:train, probes:eval or a "
                         "folder with prompts.jsonl and topics.jsonl.")
    lm = FrozenLM.load(cfg.model)

    def planner(states):
        return policy.act(states.float()).numpy()

    conditions = make_conditions(cfg.conditions, planner if policy is not None else None)
    steered = any(c.policy is not None for c in conditions)
    projection = policy.projection if policy is not None else (
        prepare_projection(cfg, lm, tasks, out) if steered else None)
    seeds = [derive_seed(cfg.seed, "stability", k) for k in range(cfg.seeds)]
    runtime.say(LOG, f"stability: {len(tasks)} tasks x {len(seeds)} seeds x {len(conditions)} conditions "
                         f"({', '.join(c.name for c in conditions)}), {cfg.rounds} rounds")
    bar = tqdm(desc="stability", dynamic_ncols=True)
    run = measure(lm, projection, tasks, conditions, cfg.env, cfg.rounds, seeds, cfg.batch_size,
                  progress=lambda text: (bar.set_description(text), bar.update(1)))
    bar.close()
    summary = stability_report.summarize([a for a in run.answers], seed=cfg.seed)
    prompts = sorted({t.scenario.id for t in tasks})
    meta = {"model": lm.name, "policy": cfg.policy or "none", "tasks": f"{cfg.tasks} ({len(tasks)} tasks, "
            f"{len(prompts)} prompts)", "seeds": f"{cfg.seeds} per task (run seed {cfg.seed})", "rounds": cfg.rounds,
            "sampling": _sampling(cfg), "prefix": cfg.prefix.kind if policy is None else "from the policy",
            "seconds": round(run.seconds, 1), "prompts": ", ".join(prompts)}
    paths = stability_report.write(summary, out, meta)
    with (out / "answers.jsonl").open("w") as fh:
        fh.writelines(json.dumps(asdict(a)) + "\n" for a in run.answers)
    with (out / "dialogues.jsonl").open("w") as fh:
        fh.writelines(json.dumps(d) + "\n" for d in run.dialogues)
    metrics = {**stability_report.flat_metrics(summary), "perf/stability_seconds": run.seconds,
               **{f"perf/{k}": float(v) for k, v in run.counts.items()}}
    tracker = make_tracker(cfg.logger, OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True), out,
                           f"{cfg.name}-stability")
    for i, rnd in enumerate(summary["rounds"]):
        tracker.log({f"stability/{c}/{k}": summary["results"][c][i][k] for c in summary["conditions"]
                     for k in ("mean", "low", "high")}, step=rnd)
    tracker.image("stability/chart", paths["png"], step=summary["rounds"][-1])
    tracker.table("stability/answers", ["task", "seed", "condition", "round", "answer", "score"],
                  [[a.task_id, a.seed, a.condition, a.round, a.answer, a.score] for a in run.answers[:400]],
                  step=summary["rounds"][-1])
    tracker.summary(metrics)
    tracker.finish()
    LOG.info(f"{run.seconds:.0f} s; report: {paths['markdown']}")
    print(f"\n{stability_report.markdown(summary)}\nreport: {paths['markdown']}  chart: {paths['png']}")
    return metrics


def _sampling(cfg: StabilityConfig) -> str:
    s = cfg.env.sampling
    if not s.do_sample:
        return f"greedy, {s.max_new_tokens} tokens"
    return f"T={s.temperature}, top_p={s.top_p}, rep={s.repetition_penalty}, {s.max_new_tokens} tokens"


main = hydra_entry("stability", StabilityConfig, stability)


if __name__ == "__main__":
    main()
