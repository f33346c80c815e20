"""Does a stronger prefix add the tone it stands for? Each moods behaviour at several strengths, per goal type.

    python benchmarks/prefix_strength.py --data outputs/datasets/mood-greedy --norms 1 1.5 2 3

On the moods task's held-out goals (every task, both sides, greedy decoding) the positive and the negative corner of
the dataset's action space are played with the prefix scaled to ``prefix.norm`` times its trained length (1 is the
basis as trained), beside the unsteered model. Reported per strength and behaviour: the mean reward on warm and on
angry goals (the sentiment check's graded score of the steered line), each against the unsteered model (paired 95 %
intervals clustered by task), and the cost: the mean per-token log-probability of the steered lines under the
unsteered model, against that of the unsteered model's own lines. Writes ``results/prefix_strength.json``; the
table goes into ``docs/state-learning.md`` (``benchmarks/state_learning.py`` reads the JSON).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import common  # noqa: F401  (CPU settings before torch)
import numpy as np
import torch
from state_learning import CORNERS, Goals, compare, setting, tone

from dat.action.projection import UpProjection
from dat.lm.frozen import FrozenLM

OUT = common.RESULTS / "prefix_strength.json"


def played(goals: Goals, actions: np.ndarray, lm: FrozenLM) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and the steered lines' fluency (mean token log-prob under the unsteered model) of every goal."""
    rewards, scores, tones = [], [], []
    width = goals.envs.num_envs
    for start in range(0, len(goals.goals), width):
        chunk = goals.goals[start:start + width]
        pad = width - len(chunk)
        options = {"task_index": [t for t, _ in chunk] + [0] * pad, "steered": [s for _, s in chunk] + [0] * pad,
                   "partner_opens": True}
        goals.envs.reset(seed=0, options=options)
        rows = np.concatenate([actions[start:start + len(chunk)], np.full((pad, actions.shape[1]), np.nan)])
        _, r, _, _, infos = goals.envs.step(rows.astype(np.float32))
        rewards += list(r[: len(chunk)])
        tones += [tone(record) for record in infos["record"][: len(chunk)]]
        dialogues = goals.envs.dialogues[: len(chunk)]
        before = [d.view(d.steered)[:-1] for d in dialogues]  # the chat the steered line answered
        lines = [d.turns[-1].text for d in dialogues]
        total, count = lm.reply_logprobs(before, lines)
        scores += list((total / count.clamp(min=1)).tolist())
    goals.tones = tones
    return np.array(rewards), np.array(scores)


def measure(args) -> dict:
    cfg = setting(Path(args.data))
    lm = FrozenLM.load(cfg.model)
    trained = UpProjection.load(Path(args.data) / "projection")
    goals = Goals(cfg, lm, trained)
    d = trained.cfg.planner_dim
    unsteered, unsteered_fluency = played(goals, np.full((len(goals.goals), d), np.nan), lm)
    tones = goals.tones
    groups = {t: [i for i, x in enumerate(tones) if x == t] for t in ("positive", "negative")}
    rows = []
    length = trained.cfg.norm
    for norm in args.norms:
        trained.cfg = replace(trained.cfg, norm=length * norm)  # the env's projection: its prefixes, rescaled
        for name in ("positive", "negative"):
            actions = np.tile(np.array(CORNERS[name], np.float32), (len(goals.goals), 1))
            rewards, lines = played(goals, actions, lm)
            row = {"norm": norm, "behaviour": name, "fluency": float(lines.mean()),
                   "fluency_vs_unsteered": float(lines.mean() - unsteered_fluency.mean())}
            for goal_tone, members in groups.items():
                ids = [goals.task_ids[i] for i in members]
                row[goal_tone] = {"reward": float(rewards[members].mean()),
                                  "vs_unsteered": compare(rewards[members], unsteered[members], ids)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"data": str(args.data), "held_out_goals": len(goals.goals),
            "unsteered": {t: float(unsteered[m].mean()) for t, m in groups.items()},
            "unsteered_fluency": float(unsteered_fluency.mean()), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="outputs/datasets/mood-greedy")
    parser.add_argument("--norms", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    args = parser.parse_args()
    with torch.no_grad():
        result = measure(args)
    common.write_result("prefix_strength", result)


if __name__ == "__main__":
    main()
