"""Does the planner read its state? Trained runs of a task where it must, against the best constant action.

    python train.py experiment=mood seed=0        # and seed=1, seed=2
    python experiments/state_matters.py "outputs/train/experiment=mood,seed=*"

On the ``moods`` family (``experiment=mood``) each steered agent's goal asks for warmth or anger, and
the scenario's own graded sentiment check scores its line, so the best action depends on the scenario
and the side. A planner that only learned "this prefix is good on average" is matched by a constant
action; beating the best constant is the evidence that it reads the last-token state (DAT's premise).

1. **The best constant action, chosen on the training tasks**: every corner of the action space (one
   behaviour's prefix: a_k = +1, the others -1) and the zero action play ``--select-per-task``
   episodes of every *training* task; the highest mean reward wins. Chosen once, with the first run's
   config, and kept in the JSON (``--reselect`` chooses again).
2. **Per run**: that constant plays exactly the held-out episodes the run's final evaluation played
   (same tasks, sides and seeds; the planner's and the unsteered model's are read from
   ``eval/round-N/episodes``), and is paired with both. Intervals are 95% paired bootstraps
   clustered by task (``dat.eval.stats``). Also reported: how often the planner's strongest behaviour
   matches the tone the steered agent's goal asks for, per tone.

Writes ``results/state_matters.json`` and ``.md``.
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from dat.config import to_config  # noqa: E402
from dat.dialogue.episodes import Episode, load_episodes  # noqa: E402
from dat.dialogue.rollout import collect  # noqa: E402
from dat.eval.conditions import episode_scores, eval_order  # noqa: E402
from dat.eval.stats import summarize_conditions  # noqa: E402
from dat.judges import make_judge  # noqa: E402
from dat.judges.reward import reward as judged_reward  # noqa: E402
from dat.lm.frozen import FrozenLM  # noqa: E402
from dat.rl.export import DATPolicy  # noqa: E402
from dat.seeding import derive_seed  # noqa: E402
from envs.scenarios import load_scenarios  # noqa: E402
from envs.vector_env import collector_envs  # noqa: E402

NAME = "state_matters"


def candidates(names: list[str]) -> dict[str, np.ndarray]:
    """Each behaviour alone (its logit +1, the others -1) and the zero action (the prefixes mixed)."""
    k = len(names)
    corners = {n: np.where(np.arange(k) == i, 1.0, -1.0).astype(np.float32) for i, n in enumerate(names)}
    return {**corners, "zero": np.zeros(k, np.float32)}


def constant(action: np.ndarray):
    return lambda states: np.tile(action, (len(states), 1))


class Run:
    """A finished training run: its config, export, last evaluation round and what it needs to play more."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.cfg = to_config(OmegaConf.load(folder / ".hydra" / "config.yaml"))
        rounds = sorted((folder / "eval").glob("round-*/episodes"))
        if not rounds:
            raise FileNotFoundError(f"{folder}: no eval/round-*/episodes; train it to the end first.")
        self.round = rounds[-1].parent.name
        self.episodes = {c: load_episodes(rounds[-1] / c) for c in ("policy", "unsteered")}
        self.policy = DATPolicy.from_pretrained(folder / "export")
        shape = self.policy.projection.cfg
        self.behaviours = ([b.name for b in self.cfg.behaviours.behaviours] if shape.kind == "behaviours"
                           else [f"axis{i}" for i in range(shape.action_dim)])  # names of the action's axes

    def reward_fn(self, judgement, steered: int) -> float | None:
        return judged_reward(judgement, steered, self.cfg.judge.weights)

    def play(self, lm: FrozenLM, judge, action: np.ndarray, tasks, per_task: int, seed: int) -> list[Episode]:
        order = eval_order(len(tasks), per_task)
        envs = collector_envs(lm, self.policy.projection, tasks, judge, self.cfg.env, self.reward_fn, len(order),
                              self.cfg.loop.batch_size)
        return collect(envs, constant(action), len(order), seed, keep_failed=True, task_order=order)


def select(run: Run, lm: FrozenLM, judge, per_task: int) -> dict:
    """Mean training-task reward of every candidate constant action; the best one."""
    tasks = load_scenarios(run.cfg.env.scenarios.train, root=run.cfg.env.scenarios.root)
    means = {}
    for name, action in candidates(run.behaviours).items():
        played = run.play(lm, judge, action, tasks, per_task, derive_seed(0, "constant-select"))
        rewards = episode_scores(played)["reward"]
        means[name] = {"action": action.tolist(), "mean": float(np.nanmean(rewards)),
                       "se": float(np.nanstd(rewards) / np.sqrt(np.isfinite(rewards).sum())),
                       "episodes": len(played)}
        print(f"  constant {name}: {means[name]['mean']:.3f} +- {means[name]['se']:.3f}", flush=True)
    best = max(means, key=lambda n: means[n]["mean"])
    return {"scenarios": run.cfg.env.scenarios.train, "per_task": per_task, "candidates": means, "best": best,
            "behaviours": run.behaviours}


def target_of(e: Episode) -> str | None:
    """The tone the steered agent's goal asks for (its sentiment check), if any."""
    for check in e.record.checks:
        if check.get("kind") == "sentiment" and check.get("agent", e.steered) == e.steered:
            return check["target"]
    return None


PICK_MARGIN = 0.1
"""A behaviour is picked when its logit leads the next by this much (weight >= 95 % at sharpness 30)."""


def picked(action: np.ndarray, behaviours: list[str]) -> str:
    """The behaviour an action picks, or "mixed" when no logit leads clearly (e.g. all saturated at +1)."""
    order = np.argsort(action)[::-1]
    return behaviours[int(order[0])] if action[order[0]] - action[order[1]] >= PICK_MARGIN else "mixed"


def agreement(episodes: list[Episode], behaviours: list[str]) -> dict:
    """Per goal tone, how often the planner's first action picked each behaviour (or mixed them)."""
    out: dict[str, dict[str, float]] = {}
    for tone in ("positive", "negative"):
        chosen = [picked(e.actions[0], behaviours) for e in episodes if target_of(e) == tone]
        out[tone] = {b: round(chosen.count(b) / len(chosen), 3) for b in (*behaviours, "mixed")} if chosen else {}
        out[tone]["episodes"] = len(chosen)
    return out


def compare(run: Run, lm: FrozenLM, judge, selection: dict) -> dict:
    """The best constant on the run's held-out episodes, paired with the planner and the unsteered model."""
    tasks = load_scenarios(run.cfg.env.scenarios.eval, root=run.cfg.env.scenarios.root)[: run.cfg.loop.eval_tasks]
    action = np.asarray(selection["candidates"][selection["best"]]["action"], np.float32)
    played = run.play(lm, judge, action, tasks, run.cfg.loop.eval_per_task, derive_seed(run.cfg.seed, "eval"))
    runs = {**run.episodes, "constant": played}
    if any([e.seed for e in eps] != [e.seed for e in played] for eps in runs.values()):
        raise ValueError(f"{run.folder}: the constant did not play the evaluation's episodes; cannot pair.")
    scores = {name: {"reward": episode_scores(eps)["reward"]} for name, eps in runs.items()}
    groups = [e.task_id for e in played]
    vs_unsteered = summarize_conditions(scores, baseline="unsteered", groups=groups, seed=run.cfg.seed)
    vs_constant = summarize_conditions(scores, baseline="constant", groups=groups, seed=run.cfg.seed)
    result = {name: {k: vs_unsteered["results"][name]["reward"][k] for k in ("mean", "low", "high", "n")}
              for name in runs}
    return {"run": str(run.folder), "seed": run.cfg.seed, "round": run.round, "results": result,
            "policy_minus_unsteered": vs_unsteered["results"]["policy"]["reward"]["diff"],
            "constant_minus_unsteered": vs_unsteered["results"]["constant"]["reward"]["diff"],
            "policy_minus_constant": vs_constant["results"]["policy"]["reward"]["diff"],
            "policy_choice_by_tone": agreement(run.episodes["policy"], run.behaviours),
            "unit": vs_unsteered["unit"]}


def _diff(d: dict) -> str:
    return f"{d['mean_diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] (p {d['p_value']:.3f})"


def _shares(counts: dict, kinds: list[str]) -> str:
    return " / ".join(f"{counts.get(k, 0.0):.0%}" for k in kinds)


def markdown(result: dict) -> str:
    sel = result["selection"]
    kinds = [*sel["behaviours"], "mixed"]
    names = " / ".join(kinds)
    lines = [f"Best constant action on `{sel['scenarios']}` ({sel['per_task']} episode(s) per task): "
             + ", ".join(f"{n} {c['mean']:.3f} ± {c['se']:.3f}" for n, c in sel["candidates"].items())
             + f" → **{sel['best']}**.", "",
             "| seed | policy | unsteered | best constant | policy − unsteered | policy − constant | "
             f"constant − unsteered | planner's pick for warm goals ({names}) | for angry goals |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        res, tone = r["results"], r["policy_choice_by_tone"]
        lines.append(
            f"| {r['seed']} | {res['policy']['mean']:.3f} | {res['unsteered']['mean']:.3f} | "
            f"{res['constant']['mean']:.3f} | {_diff(r['policy_minus_unsteered'])} | "
            f"{_diff(r['policy_minus_constant'])} | {_diff(r['constant_minus_unsteered'])} | "
            f"{_shares(tone['positive'], kinds)} | {_shares(tone['negative'], kinds)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="finished run folders or glob patterns")
    parser.add_argument("--select-per-task", type=int, default=1, help="episodes per training task and candidate")
    parser.add_argument("--reselect", action="store_true", help="choose the best constant again")
    parser.add_argument("--out", default=str(measuring.RESULTS))
    parser.add_argument("--report-only", action="store_true",
                        help="recompute the choice shares and tables of an existing result from its runs' episodes")
    parser.add_argument("--name", default=NAME, help="file name of the results (a previous file's selection is reused)")
    args = parser.parse_args()
    folders = sorted({Path(p) for pattern in args.runs for p in glob.glob(pattern)})
    if not folders:
        raise SystemExit(f"No run folder matches {args.runs}; train first (python train.py experiment=mood seed=0).")
    path = Path(args.out) / f"{args.name}.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if args.report_only:
        result = json.loads(path.read_text())
        for r in result["runs"]:
            run = Run(Path(r["run"]))
            r["policy_choice_by_tone"] = agreement(run.episodes["policy"], run.behaviours)
        path.write_text(json.dumps(result, indent=2))
        path.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
        return
    first = Run(folders[0])
    lm = FrozenLM.load(first.cfg.model)
    judge = make_judge(first.cfg.judge, lm=lm, cache_dir=first.folder / "judge_cache")
    selection = previous.get("selection")
    if args.reselect or not selection or selection.get("per_task") != args.select_per_task:
        print("choosing the best constant action on the training tasks ...", flush=True)
        selection = select(first, lm, judge, args.select_per_task)
    runs = []
    for folder in folders:
        print(f"{folder}: the best constant on the held-out episodes ...", flush=True)
        runs.append(compare(first if folder == first.folder else Run(folder), lm, judge, selection))
    result = {"note": __doc__.split("\n\n")[2].replace("\n", " "), "model": lm.name, "selection": selection,
              "runs": runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": measuring.machine(), **result}, indent=2))
    path.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
