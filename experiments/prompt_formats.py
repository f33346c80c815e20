"""Which dialogue prompt gives the unsteered model its best fair chance? Measured on the *training* tasks.

The environment opens a dialogue with a user line, the opening cue, which a small model may repeat instead of
speaking in character. Before any planner is compared with the unsteered model, the prompt should be the one the
unsteered model does best with. Each format (a set of ``env.*`` overrides: the cue reworded or dropped, the
partner's first line as the only cue) plays the same unsteered episodes (``--per-task`` per training task, the
same seeds in every format) with the default model, decoding and judge; reported per format: the share of the
steered agent's lines in character (``dat.eval.parroting``'s rule) and echoing none of the format's own cue (the
rule knows the default cue's wording, not a new one's), the partner's line just before, or the agent's own system
text (``dat.restating`` tells an echo of any: a reward for goal similarity pays a line that narrates the brief), the
distinct share, the share that restate the goal, and the mean reward with a paired interval against the current
default, clustered by task.

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

from dat.action.steerability import out_of_character
from dat.config import TrainConfig, register_configs, to_config
from dat.dialogue.rollout import collect
from dat.dialogue.rules import EnvConfig
from dat.eval import parroting
from dat.eval.stats import paired_difference
from dat.judges import make_judge
from dat.judges.reward import reward as judged_reward
from dat.lm.frozen import FrozenLM
from dat.records import DialogueRecord
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


ECHOES = ("cue", "partner", "brief")
"""What a line may echo instead of speaking: the format's opening cue, the partner's line just before it, the
agent's own system text (narrating its background is not speaking in character either)."""


def echo_kinds(record: DialogueRecord, brief: str, cue: str) -> list[dict[str, bool]]:
    """Per steered line: in character by the steerability rule, and whether it restates (``dat.restating``) the
    opening ``cue``, the partner's line just before it, or the agent's own ``brief``."""
    own, other = record.names[record.steered], record.names[1 - record.steered]
    lines = []
    for i, turn in enumerate(record.turns):
        if turn.agent != record.steered:
            continue
        before = record.turns[i - 1].text if i else ""
        lines.append({"in_character": not out_of_character(turn.text, own, other),
                      "cue": bool(cue) and restates(turn.text, cue),
                      "partner": bool(before) and restates(turn.text, before),
                      "brief": restates(turn.text, brief)})
    return lines


def config(overrides: list[str]) -> TrainConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_config(compose("train", overrides=["logger=none", *overrides]))


def measure(args) -> dict:
    base = config([])
    lm = FrozenLM.load(base.model)
    tasks = load_scenarios(base.env.scenarios.train, ids=base.env.scenarios.ids)
    by_id = {t.id: t for t in tasks}
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
        echoes = [echo_kinds(e.record, by_id[e.task_id].agent_view(e.record.steered, leave_phrase=cfg.env.leave_phrase,
                                                                   wording=cfg.env.system_wording), cfg.env.opening_cue)
                  for e in episodes]
        rewards[name] = np.array([np.nan if e.reward is None else e.reward for e in episodes], float)
        groups = [e.task_id for e in episodes]
        rows[name] = {"overrides": overrides, "episodes": len(episodes),
                      "in_character": float(np.nanmean([s["in_character"] for s in shares])),
                      **{f"echoes_{kind}": float(np.mean([line[kind] for ep in echoes for line in ep]))
                         for kind in ECHOES},
                      "in_character_no_echo": float(np.mean([line["in_character"] and not any(line[k] for k in ECHOES)
                                                            for ep in echoes for line in ep])),
                      "distinct": parroting.distinct([e.record for e in episodes]),
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
    fair = {k: rows[k]["in_character_no_echo"] for k in rows}  # an echo is never in character
    best = max(rows, key=lambda k: (round(fair[k], 2), rows[k]["reward"]))
    lines = ["# Prompt formats: the unsteered model's fair chance", "",
             "Generated by `python experiments/prompt_formats.py` from `benchmarks/results/prompt_formats.json`; "
             "method in the script's docstring.", "",
             f"**In character most often: {best}** ({fair[best]:.0%} of the unsteered agent's lines, "
             f"against {fair['default cue']:.0%} with the default cue). Model {result['model']}, "
             f"judge {result['judge']}, {result['tasks']} training tasks ({result['scenarios']}), "
             f"{result['per_task']} episodes each, seed {result['seed']}, no prefix.", "",
             "| format | overrides | in character | echoes its cue | echoes the partner | narrates its brief "
             "| distinct | restates goal | reward | − default cue |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        d = row.get("reward_vs_default")
        diff = "–" if d is None else f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        lines.append(f"| {name} | {' '.join(f'`{o}`' for o in row['overrides']) or '(none)'} | "
                     f"{fair[name]:.0%} | {row['echoes_cue']:.0%} | {row['echoes_partner']:.0%} | "
                     f"{row['echoes_brief']:.0%} | {row['distinct']:.0%} | {row['restates_goal']:.0%} | "
                     f"{row['reward']:.3f} | {diff} |")
    default = EnvConfig()
    lines += ["", "In character: the share of the steered agent's lines that pass the in-character rule and echo "
              "none of the format's opening cue, the partner's line just before, or the agent's own system text "
              "(each by `dat.restating`: word-pair overlap of at least 0.3 or a copied run of 6 words); the echo "
              "columns give each kind's share. Distinct: the share of distinct lines over the format's episodes.", "",
              f"The defaults (`env.opening_cue={default.opening_cue!r}`, `env.system_wording={default.system_wording}`"
              f", who opens drawn per episode) are the format \"{DEFAULT}\": {fair[DEFAULT]:.0%} in character, "
              + ("the most of every format" if best == DEFAULT else
                 f"{fair[best] - fair[DEFAULT]:.0%} below the best format")
              + f", reward {rows[DEFAULT]['reward']:.3f}.", "", *top_reward(rows, fair),
              "The first episode of each format:", ""]
    for name, row in rows.items():
        lines += [f"**{name}**", "", "```", row["example"], "```", ""]
    lines += ["", "Intervals: 95 % paired bootstrap over episodes, clustered by task.", ""]
    return "\n".join(lines)


def top_reward(rows: dict, fair: dict) -> list[str]:
    """A sentence on the format with the highest reward, when it is not the default: how much of what it is paid
    for is lines that narrate the brief or echo the partner (a goal-similarity reward pays both)."""
    top = max(rows, key=lambda k: rows[k]["reward"])
    if top == DEFAULT:
        return []
    t, d = rows[top], rows[DEFAULT]
    return [f"The highest reward is \"{top}\"'s ({t['reward']:.3f}), with {fair[top]:.0%} in character: "
            f"{t['echoes_brief']:.0%} of its lines narrate the agent's own brief and {t['echoes_partner']:.0%} echo "
            f"the partner (the default's: {d['echoes_brief']:.0%} and {d['echoes_partner']:.0%}); a reward for "
            "similarity to the goal pays narrating the brief, so the default stays the format most in character.", ""]


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
