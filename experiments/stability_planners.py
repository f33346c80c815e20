"""The 8-round stability curves of several trained planners (one per training seed) against the same
unsteered sample, pooled: each planner's answers keep their task, the unsteered answers are the ones
every measurement shares (same run seed, tasks and batches, so the same sample), and the planners'
pooled curve pairs each (task, planner) with that task's unsteered answer. Writes
``benchmarks/results/stability_planners.{json,md,png}``.

    python experiments/stability_planners.py outputs/stability/<run of seed 0> <seed 1> <seed 2>

A planner measured alone (``stability.py conditions=[policy]``, half the work) takes its unsteered answers
from ``--unsteered``, an earlier measurement with the same run seed and tasks: a row's sample does not
depend on the other rows of its batch, so that sample is the one the planner's run would have drawn.
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from dat.eval import stability_report  # noqa: E402
from dat.eval.stability import BASELINE, ProbeAnswer  # noqa: E402


def answers(folder: Path) -> list[ProbeAnswer]:
    return [ProbeAnswer(**json.loads(line)) for line in (folder / "answers.jsonl").read_text().splitlines() if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="stability.py output folders, one per planner")
    parser.add_argument("--unsteered", type=Path, default=None,
                        help="the measurement whose unsteered answers every planner is paired with "
                        "(default: the first run)")
    args = parser.parse_args()
    runs = [answers(r) for r in args.runs]
    base = [a for a in answers(args.unsteered or args.runs[0]) if a.condition == BASELINE]
    if not base:
        raise SystemExit(f"{args.unsteered or args.runs[0]} has no unsteered answers: name one with --unsteered")
    tasks = {a.task_id for a in base}
    for run, other in zip(args.runs, runs, strict=True):  # one unsteered sample for every measurement
        if {a.task_id for a in other if a.condition == "policy"} != tasks:
            raise SystemExit(f"{run}: its planner answered other tasks than the unsteered sample")
        same = sorted((a.task_id, a.round, a.answer) for a in other if a.condition == BASELINE)
        if same and same != sorted((a.task_id, a.round, a.answer) for a in base):
            raise SystemExit("the runs' unsteered answers differ: measure every planner with the same seed and tasks")
    pooled = [replace(a, seed=k) for k, run in enumerate(runs) for a in run if a.condition == "policy"]
    pooled += [replace(a, seed=k) for k in range(len(runs)) for a in base]
    model = json.loads((args.runs[0] / "stability.json").read_text())["metadata"].get("model", "")
    meta = {"model": model, "planners": [str(r) for r in args.runs], "unsteered": str(args.unsteered or args.runs[0]),
            "pairing": "each (task, planner) with the task's unsteered "
            "answer", "command": "python experiments/stability_planners.py " + " ".join(map(str, args.runs))
            + (f" --unsteered {args.unsteered}" if args.unsteered else "")}
    with tempfile.TemporaryDirectory() as tmp:
        paths = stability_report.write(stability_report.summarize(pooled), Path(tmp), meta)
        for path in paths.values():
            shutil.copy(path, measuring.RESULTS / f"stability_planners{path.suffix}")
    print((measuring.RESULTS / "stability_planners.md").read_text())


if __name__ == "__main__":
    main()
