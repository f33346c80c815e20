"""Which dialogue prompt gives the unsteered model its best fair chance? Measured on the *training* tasks.

The environment opens a dialogue with a user line, the opening cue, which a small model may repeat instead of
speaking in character. Before any planner is compared with the unsteered model, the prompt should be the one the
unsteered model does best with. Each format (a set of ``env.*`` overrides: the cue reworded or dropped, the
partner's first line as the only cue) plays the same unsteered episodes (``--per-task`` per training task, the
same seeds in every format) with the default model, decoding and judge; reported per format: the share of the
steered agent's lines in character (``dat.eval.parroting``) and not echoing the format's own cue (the in-character
rule knows the default cue's wording, not a new one's: ``dat.restating`` tells an echo of any), that restate its
goal, and the mean reward with a paired interval against the current default, clustered by task.

    python experiments/prompt_formats.py    # -> benchmarks/results/prompt_formats.json, docs/results/prompt-formats.md

The system text (``envs.scenarios.Task.agent_view``) is the labelled sheet but in the Sotopia-style formats.
"""

from __future__ import annotations

from dat_pipeline import CONF, measuring

import argparse
import json
import time
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

from dat.config import TrainConfig, register_configs, to_config
from dat.dialogue.rollout import collect
from dat.dialogue.rules import EnvConfig
from dat.eval import parroting
from dat.eval.stats import paired_difference
from dat.judges import make_judge
from dat.judges.reward import reward as judged_reward
from dat.lm.frozen import FrozenLM
from dat.restating import restates
from envs.scenarios import load_scenarios
from envs.vector_env import collector_envs

ROOT = Path(__file__).resolve().parents[1]
OUT = measuring.RESULTS / "prompt_formats.json"
PAGE = ROOT / "docs" / "results" / "prompt-formats.md"
STAGE_DIRECTION = "env.opening_cue='(The conversation starts. You speak first.)'"
FORMATS = {
    "default cue": [STAGE_DIRECTION],
    "cue reworded": ["env.opening_cue='Hello! Please start.'"],
    "no cue": ["env.opening_cue=''"],
    "partner opens": ["env.partner_opens=true", STAGE_DIRECTION],
    "partner opens, cue reworded": ["env.partner_opens=true", "env.opening_cue='Hello! Please start.'"],
    "Sotopia-style system text": ["env.system_wording=sotopia", "env.opening_cue='Hello! Please start.'"],
    "Sotopia-style system text, no cue": ["env.system_wording=sotopia", "env.opening_cue=''"],
}
"""Each format's overrides on the training config ("default cue": the stage direction the cue was before this was
measured; the Sotopia-style formats word the system text as Sotopia's agent prompt does, ``env.system_wording``)."""
DEFAULT = "cue reworded"
"""The format the defaults are (``EnvConfig``: the greeting cue, the labelled system text, who opens drawn)."""


def config(overrides: list[str]) -> TrainConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_config(compose("train", overrides=["logger=none", *overrides]))


def measure(args) -> dict:
    base = config([])
    lm = FrozenLM.load(base.model)
    tasks = load_scenarios(base.env.scenarios.train, ids=base.env.scenarios.ids)
    judge = make_judge(base.judge, lm=lm)
    n = len(tasks) * args.per_task
    rows, rewards = {}, {}
    for name, overrides in FORMATS.items():
        cfg = config(overrides)
        def reward_fn(judgement, side: int, weights=cfg.judge.weights) -> float | None:
            return judged_reward(judgement, side, weights)

        envs = collector_envs(lm, None, tasks, judge, cfg.env, reward_fn, n, base.loop.batch_size)
        began = time.perf_counter()
        episodes = collect(envs, None, n, args.seed, keep_failed=True)
        shares = [parroting.episode_shares(e.record) for e in episodes]
        lines = [t.text for e in episodes for t in e.record.turns if t.agent == e.record.steered]
        cue = cfg.env.opening_cue
        echoes = float(np.mean([bool(cue) and restates(t, cue) for t in lines])) if lines else float("nan")
        rewards[name] = np.array([np.nan if e.reward is None else e.reward for e in episodes], float)
        groups = [e.task_id for e in episodes]
        rows[name] = {"overrides": overrides, "episodes": len(episodes),
                      "in_character": float(np.nanmean([s["in_character"] for s in shares])),
                      "echoes_cue": echoes,
                      "restates_goal": float(np.nanmean([s["restates_goal"] for s in shares])),
                      "reward": float(np.nanmean(rewards[name])), "seconds": time.perf_counter() - began,
                      "example": episodes[0].record.transcript()}
        if name != "default cue":
            r = paired_difference(rewards[name], rewards["default cue"], groups, seed=args.seed)
            rows[name]["reward_vs_default"] = {"diff": r.mean_diff, "low": r.ci_low, "high": r.ci_high,
                                               "p": r.p_value}
        print(json.dumps({name: {k: v for k, v in rows[name].items() if k != "example"}}))
    return {"model": lm.name, "judge": base.judge.backend, "scenarios": base.env.scenarios.train,
            "tasks": len(tasks), "per_task": args.per_task, "seed": args.seed, "formats": rows,
            "machine": measuring.machine()}


def markdown(result: dict) -> str:
    rows = result["formats"]
    fair = {k: rows[k]["in_character"] - rows[k]["echoes_cue"] for k in rows}  # an echo is never in character
    best = max(rows, key=lambda k: (round(fair[k], 2), rows[k]["reward"]))
    lines = ["# Prompt formats: the unsteered model's fair chance", "",
             "Generated by `python experiments/prompt_formats.py` from `benchmarks/results/prompt_formats.json`; "
             "method in the script's docstring.", "",
             f"**In character most often: {best}** ({fair[best]:.0%} of the unsteered agent's lines, "
             f"against {fair['default cue']:.0%} with the default cue). Model {result['model']}, "
             f"judge {result['judge']}, {result['tasks']} training tasks ({result['scenarios']}), "
             f"{result['per_task']} episodes each, seed {result['seed']}, no prefix.", "",
             "| format | overrides | in character | echoes its cue | restates goal | reward | − default cue |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        d = row.get("reward_vs_default")
        diff = "–" if d is None else f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        lines.append(f"| {name} | {' '.join(f'`{o}`' for o in row['overrides']) or '(none)'} | "
                     f"{fair[name]:.0%} | {row['echoes_cue']:.0%} | {row['restates_goal']:.0%} | {row['reward']:.3f} | "
                     f"{diff} |")
    default = EnvConfig()
    lines += ["", "In character: the in-character rule's share less the lines that echo the format's own cue.", "",
              f"The defaults (`env.opening_cue={default.opening_cue!r}`, `env.system_wording={default.system_wording}`"
              f", who opens drawn per episode) are the format \"{DEFAULT}\": {fair[DEFAULT]:.0%} in character, "
              f"{fair[best] - fair[DEFAULT]:.0%} below the best format, reward {rows[DEFAULT]['reward']:.3f} against "
              f"{rows[best]['reward']:.3f}.", "", "The first episode of each format:", ""]
    for name, row in rows.items():
        lines += [f"**{name}**", "", "```", row["example"], "```", ""]
    lines += ["", "Intervals: 95 % paired bootstrap over episodes, clustered by task.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-task", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--markdown-only", action="store_true")
    args = parser.parse_args()
    if not args.markdown_only:
        OUT.write_text(json.dumps(measure(args), indent=2) + "\n")
    PAGE.write_text(markdown(json.loads(OUT.read_text())))
    print(f"wrote {OUT} and {PAGE}")


if __name__ == "__main__":
    main()
