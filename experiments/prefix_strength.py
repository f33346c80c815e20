"""Does a stronger prefix add the tone it stands for? Each moods behaviour at several strengths, per goal type.

    python experiments/prefix_strength.py --data outputs/datasets/mood-greedy --norms 1 1.5 2 3
    python experiments/prefix_strength.py --data outputs/datasets/mood-greedy --label "beta 0.1" --norms 1 \
        --basis behaviours.beta=0.1 behaviours.name=sentiment_angry_beta01

On the moods task's held-out goals (every task, both sides, greedy decoding) the positive and the negative corner of
the dataset's action space are played with the prefix scaled to ``prefix.norm`` times its trained length (1 is the
basis as trained), beside the unsteered model. Reported per strength and behaviour: the mean reward on warm and on
angry goals (the sentiment check's graded score of the steered line), each against the unsteered model (paired 95 %
intervals clustered by task), and the cost: the mean per-token log-probability of the steered lines under the
unsteered model, against that of the unsteered model's own lines.

``--basis`` measures another basis instead of the dataset's: Hydra overrides of ``experiment=mood`` that describe it
(``prefix=behaviours`` is the plain sentiment basis, made on the model's own replies only; stage 1 makes it on the
moods train prompts, or reuses the cached copy), so a way of training the prefixes can be
judged on the goals before any data is collected through it. Each ``--label`` is one section of
``results/prefix_strength.json``; the tables go into ``docs/state-learning.md`` (``experiments/state_learning.py``
reads the JSON).
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from state_learning import CORNERS, Goals, compare, open_goals, setting

from dat.lm.frozen import FrozenLM
from dat.stage1 import prepare_projection
from envs.scenarios import load_scenarios

OUT = measuring.RESULTS / "prefix_strength.json"


def played(goals: Goals, actions: np.ndarray, lm: FrozenLM) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and the steered lines' fluency (mean token log-prob under the unsteered model) of every goal."""
    rewards = goals.play(actions)
    before = [d.view(d.steered)[:-1] for d in goals.dialogues]  # the chat the steered line answered
    total, count = lm.reply_logprobs(before, [d.turns[-1].text for d in goals.dialogues])
    return rewards, (total / count.clamp(min=1)).numpy()


def measure(args) -> dict:
    _, lm, trained, goals = open_goals(args.data)
    if args.basis:
        cfg = setting(None, tuple(args.basis))
        with tempfile.TemporaryDirectory() as out, torch.enable_grad():  # training a basis needs gradients
            trained = prepare_projection(cfg, lm, load_scenarios(cfg.env.scenarios.train), Path(out))
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
    return {"data": str(args.data), "basis": args.basis, "held_out_goals": len(goals.goals),
            "unsteered": {t: float(unsteered[m].mean()) for t, m in groups.items()},
            "unsteered_fluency": float(unsteered_fluency.mean()), "rows": rows, "machine": measuring.machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="outputs/datasets/mood-greedy")
    parser.add_argument("--norms", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0])
    parser.add_argument("--basis", nargs="*", default=[], help="Hydra overrides describing another basis")
    parser.add_argument("--label", default="the dataset's basis", help="the results' section (one per basis)")
    args = parser.parse_args()
    bases = json.loads(OUT.read_text()).get("bases", {}) if OUT.is_file() else {}
    with torch.no_grad():
        bases[args.label] = measure(args)
    measuring.write_result("prefix_strength", {"bases": bases})


if __name__ == "__main__":
    main()
