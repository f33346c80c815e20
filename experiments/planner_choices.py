"""Which behaviour a trained planner picks on each task, against the task's best one (the headroom's oracle).

    python experiments/planner_choices.py --name acts_choices \\
        --headroom "four dialogue acts (behaviours_acts), each alone, 4 episodes per task" RUN [RUN ...]

Under a behaviour basis the action's largest logit names the behaviour the sharp softmax plays
(``dat.action.projection``), so each of a planner's actions reads as one behaviour (or the null point). For each
run (a ``train.py dataset=...`` run folder: its ``export/`` planner and ``.hydra/config.yaml``):

* **training tasks**: the planner acts on the first state of every dataset episode (greedy collection: one state
  per task and side); per task, the behaviour it picks most often, set against that task's in-sample best
  candidate in the named ``benchmarks/results/headroom.json`` section (each behaviour alone, played on the same
  training tasks), and the share of tasks where they agree, beside the share the best constant agrees on;
* **held-out tasks**: the behaviour of each of its turns in the run's final evaluation (``eval/round-*/episodes/
  policy``), per task and overall: where it plays something other than the best constant.

Writes ``benchmarks/results/<name>.json``; ``experiments/update_docs.py`` renders it.
"""

from __future__ import annotations

from dat_pipeline.measuring import RESULTS

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from dat.action.behaviours import logit_names
from dat.config import TrainConfig, datasets, to_config
from dat.dialogue.dataset import read_episodes
from dat.dialogue.episodes import load_episodes
from dat.eval import constant
from dat.rl.export import DATPolicy


def picked(actions: np.ndarray, names: list[str]) -> list[str]:
    """The behaviour each action plays: its largest logit's."""
    return [names[i] for i in np.argmax(np.asarray(actions), axis=-1)]


def most_common(labels: list[str]) -> tuple[str, float]:
    label, count = Counter(labels).most_common(1)[0]
    return label, count / len(labels)


def training_choices(policy: DATPolicy, dataset: Path, names: list[str]) -> dict[str, dict]:
    """Per training task: the behaviour the planner picks on its dataset episodes' first states, and its share."""
    by_task: dict[str, list[np.ndarray]] = {}
    for episode in read_episodes(dataset):
        if len(episode.states):
            by_task.setdefault(episode.task_id, []).append(episode.states[0])
    choices = {}
    with torch.no_grad():
        for task, states in sorted(by_task.items()):
            labels = picked(policy.act(torch.as_tensor(np.stack(states))).numpy(), names)
            label, share = most_common(labels)
            choices[task] = {"planner": label, "share": share, "states": len(states)}
    return choices


def held_out_choices(run: Path, names: list[str]) -> dict[str, dict]:
    """Per held-out task of the run's final evaluation: the behaviour of each of the planner's turns."""
    final = sorted((run / "eval").glob("round-*/episodes/policy"))[-1]
    turns: dict[str, list[list[str]]] = {}
    for episode in load_episodes(final):
        turns.setdefault(episode.task_id, []).append(picked(episode.actions, names))
    return {task: {"turns": seen, "planner": most_common([x for t in seen for x in t])[0]}
            for task, seen in sorted(turns.items())}


def measure(run: Path, oracle: dict, best_constant: str) -> dict:
    config = to_config(OmegaConf.load(run / ".hydra" / "config.yaml"), TrainConfig)
    names = logit_names(config.prefix, config.behaviours)
    label_of = dict(zip(constant.one_hot(len(names)), ["zero", *names], strict=True))  # "+----" -> its behaviour
    policy = DATPolicy.from_pretrained(str(run / "export")).eval()
    if not datasets(config):
        raise SystemExit(f"{run}: trained online, not from a dataset (train.py dataset=...); its training tasks' "
                         "first states are not on disk")
    train = training_choices(policy, Path(datasets(config)[0]), names)
    for task, entry in train.items():
        entry["oracle"] = label_of.get(oracle.get(task, ""), oracle.get(task))
    scored = [e for e in train.values() if e["oracle"] is not None]
    best = label_of[best_constant]
    held_out = held_out_choices(run, names)
    every_turn = Counter(x for e in held_out.values() for t in e["turns"] for x in t)
    return {
        "run": str(run), "seed": config.seed, "logits": names, "best_constant": best,
        "training": {"tasks": train,
                     "agrees_with_oracle": float(np.mean([e["planner"] == e["oracle"] for e in scored])),
                     "best_constant_agrees": float(np.mean([e["oracle"] == best for e in scored])),
                     "picks": dict(Counter(e["planner"] for e in train.values()))},
        "held_out": {"tasks": held_out, "turn_shares": {k: v / sum(every_turn.values()) for k, v in
                                                        every_turn.most_common()},
                     "tasks_off_constant": sorted(t for t, e in held_out.items() if e["planner"] != best)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--headroom", required=True, help="the benchmarks/results/headroom.json section (--label)")
    parser.add_argument("--judge", default="embedding (training)", help="the headroom judge whose oracle is used")
    parser.add_argument("--name", default="planner_choices")
    args = parser.parse_args()
    section = json.loads((RESULTS / "headroom.json").read_text())["sections"][args.headroom]
    judged = section["judges"][args.judge]
    result = {"headroom": args.headroom, "judge": args.judge,
              "runs": [measure(run, judged["task_best"], judged["best_constant"]) for run in args.runs]}
    out = RESULTS / f"{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    for r in result["runs"]:
        t = r["training"]
        print(f"seed {r['seed']}: training tasks agree with the oracle {t['agrees_with_oracle']:.2f} (best constant "
              f"{t['best_constant_agrees']:.2f}), picks {t['picks']}; held-out turns {r['held_out']['turn_shares']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
