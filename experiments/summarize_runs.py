"""Collect the final held-out evaluation of several training runs (e.g. seeds) into one JSON.

    python experiments/summarize_runs.py --name sanity "outputs/train/experiment=sanity_sentiment,seed=*"

For each run folder it reads the last ``eval/round-NNNN/evaluation.json`` and the run's config (for an
``evaluate.py`` output folder, its one ``evaluation.json``: a run's export evaluated again, on other tasks), and
writes ``benchmarks/results/<name>.json`` with, per run and condition, each dimension's mean and 95%
interval and the paired difference to the unsteered baseline (interval and p-value); the planner against the
strongest baseline (``versus``) and against each (``policy_vs``), and each condition's distinct share.
``--held-out`` adds ``evaluate.py policy=<run>/export 'held_out_judges=[...]'`` reports to their runs: per
condition, the training judge's reward and each held-out judge's (``reward@<judge>``) on the same episodes.
"""

from __future__ import annotations

from dat_pipeline.measuring import RESULTS

import argparse
import glob
import json
from pathlib import Path

import yaml


def final_eval(run: Path, round_name: str | None = None) -> dict:
    if (run / "evaluation.json").is_file():
        return evaluated(run)
    reports = sorted((run / "eval").glob("round-*/evaluation.json"))
    if round_name is not None:
        reports = [r for r in reports if r.parent.name == round_name]
    if not reports:
        raise FileNotFoundError(f"{run}: no eval/round-*/evaluation.json; has the run finished a round?")
    report = json.loads(reports[-1].read_text())
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text()) if (run / ".hydra").is_dir() else {}
    state = json.loads((run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
                        / "state.json").read_text())
    return {
        "run": str(run), "round": reports[-1].parent.name, "seed": config.get("seed"), **_rows(report),
        "rounds_completed": state["round"], "episodes_collected": state["episodes"],
        "round_seconds": [h.get("perf/round_seconds") for h in state["history"]],
        "history": [{k: h.get(k) for k in ("round", "eval/policy/mean", "eval/unsteered/mean", "eval/zero/mean",
                                            "rollout/reward_mean", "train/critic_loss", "train/q_mean")}
                    for h in state["history"]],
    }


def evaluated(folder: Path) -> dict:
    """An ``evaluate.py`` output folder in ``final_eval``'s form, without the training history it does not have."""
    report = json.loads((folder / "evaluation.json").read_text())
    return {"run": str(folder), "round": None, "seed": report.get("metadata", {}).get("seed"), **_rows(report)}


def _rows(report: dict) -> dict:
    """An evaluation report's metadata, per condition and dimension its mean, interval and difference to the
    unsteered model, and the planner against the baselines."""
    rows = {}
    for condition, dims in report["results"].items():
        for dim, entry in dims.items():
            rows.setdefault(condition, {})[dim] = {
                k: entry[k] for k in ("mean", "low", "high", "n", "n_failed")} | {"diff": entry["diff"]}
    return {"metadata": report.get("metadata", {}), "results": rows,
            **{k: report[k] for k in ("versus", "policy_vs", "distinct") if k in report}}


def matches(pattern: str) -> list[str]:
    """The folders a command-line argument names: itself when it exists (Hydra's folder names hold brackets, such
    as ``loop.held_out_judges=[rule]``, which glob would read as a character class), else the folders among its
    glob matches (a sweep folder's ``multirun.yaml`` is not a run)."""
    return [pattern] if Path(pattern).is_dir() else [p for p in glob.glob(pattern) if Path(p).is_dir()]


def held_out(folder: Path) -> dict:
    """An evaluate.py report's rewards by judge: per condition, the mean and the difference to the unsteered model
    of the training reward and of each held-out judge's (``reward@<judge>``), on the same episodes."""
    report = json.loads((folder / "evaluation.json").read_text())
    judges = ["reward", *sorted({d for dims in report["results"].values() for d in dims if d.startswith("reward@")})]
    return {"report": str(folder), "policy": report["metadata"].get("policy"),
            "episodes": report["metadata"].get("episodes"),
            "results": {c: {j: {k: dims[j][k] for k in ("mean", "low", "high", "diff")} for j in judges if j in dims}
                        for c, dims in report["results"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--note", default="", help="what the runs were (kept in the JSON)")
    parser.add_argument("--round", default=None, help="evaluation round to read (e.g. round-0001); default: last")
    parser.add_argument("--held-out", nargs="*", default=[],
                        help="evaluate.py output folders (held_out_judges) of these runs' exports")
    parser.add_argument("runs", nargs="+", help="run folders or glob patterns")
    args = parser.parse_args()
    folders = sorted({Path(p) for pattern in args.runs for p in matches(pattern)})
    if not folders:
        raise SystemExit(f"no run folder matches {args.runs}")
    result = {"note": args.note, "runs": [final_eval(f, args.round) for f in folders]}
    for report in (held_out(Path(p)) for pattern in args.held_out for p in matches(pattern)):
        owner = next((r for r in result["runs"] if report["policy"] and
                      Path(report["policy"]).resolve().parent == Path(r["run"]).resolve()), None)
        if owner is None:
            raise SystemExit(f"{report['report']}: its policy {report['policy']} is none of the runs' exports")
        owner["held_out"] = report
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path} ({len(folders)} runs)")


if __name__ == "__main__":
    main()
