"""Summarise ``train.py experiment=stability`` over seeds: the held-out paired difference of the planner
(and of a zero action) to the unsteered model, per seed and pooled.

Each seed's final held-out evaluation (``<run>/eval/round-NNNN``) plays the same held-out probe tasks
under every condition with the same seeds, so each (seed, task) is a pair. The pooled difference resamples
*tasks* (a task's pairs from every seed move together, as in the per-seed reports). Writes
``benchmarks/results/stability_training.{json,md}``.

    python experiments/stability_training.py outputs/train/experiment=stability,seed=0 ...=seed=1 ...=seed=2
    python experiments/stability_training.py --name stability_rule_basis \
        outputs/train/experiment=stability_rule_basis,seed=0 ...=seed=1 ...=seed=2
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from dat.dialogue.episodes import load_episodes  # noqa: E402
from dat.eval.stats import paired_difference  # noqa: E402

CONDITIONS = ("policy", "zero")


def rewards(folder: Path) -> dict[str, float]:
    """task id -> terminal reward of the steered agent (NaN when the judgement failed)."""
    out = {}
    for e in load_episodes(folder):
        out[e.task_id] = float("nan") if e.reward is None else float(e.reward)
    return out


NAME = "stability_training"
"""The results' default file name under benchmarks/results."""


def by_round(report: Path) -> float:
    """The planner's mean paired difference to the unsteered model in one held-out evaluation report."""
    results = json.loads((report / "evaluation.json").read_text())["results"]
    return round(results["policy"]["reward"]["diff"]["mean_diff"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of train.py experiment=stability")
    parser.add_argument("--name", default=NAME,
                        help="file name of the results under benchmarks/results (one per experiment)")
    args = parser.parse_args()
    per_seed, pooled = [], {c: ([], [], []) for c in CONDITIONS}
    for run in args.runs:
        reports = sorted((run / "eval").glob("round-*"))
        final = reports[-1]
        base = rewards(final / "episodes" / "unsteered")
        row = {"run": str(run), "evaluation": final.name, "unsteered": float(np.nanmean(list(base.values()))),
               "policy_by_round": [by_round(folder) for folder in reports]}
        for c in CONDITIONS:
            treated = rewards(final / "episodes" / c)
            tasks = sorted(set(base) & set(treated))
            t, b = [treated[k] for k in tasks], [base[k] for k in tasks]
            row[c] = paired_difference(t, b, tasks, n_boot=10_000, seed=0).to_dict()
            pooled[c][0].extend(t), pooled[c][1].extend(b), pooled[c][2].extend(tasks)
        per_seed.append(row)
    summary = {c: paired_difference(t, b, g, n_boot=10_000, seed=0).to_dict() for c, (t, b, g) in pooled.items()}
    result = {"per_seed": per_seed, "pooled": summary, "reward": "probe score of the answer to the probe question "
              "at the end of the dialogue (judge=probe)", "command": "python experiments/stability_training.py "
              + (f"--name {args.name} " if args.name != NAME else "") + " ".join(str(r) for r in args.runs)}
    measuring.write_result(args.name, result)

    def cell(d):
        return f"{d['mean_diff']:+.2f} [{d['ci_low']:+.2f}, {d['ci_high']:+.2f}] (p={d['p_value']:.2f})"

    lines = ["| run | unsteered | planner − unsteered | zero − unsteered |", "| --- | --- | --- | --- |"]
    lines += [f"| {Path(r['run']).name} | {r['unsteered']:.2f} | {cell(r['policy'])} | {cell(r['zero'])} |"
              for r in per_seed]
    lines.append(f"| pooled ({len(per_seed)} seeds) | | {cell(summary['policy'])} | {cell(summary['zero'])} |")
    lines.append("")
    lines += [f"Planner − unsteered after each round, {Path(r['run']).name}: "
              + ", ".join(f"{d:+.2f}" for d in r["policy_by_round"]) for r in per_seed]
    (measuring.RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
