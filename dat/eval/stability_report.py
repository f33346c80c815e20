"""Stability per round and condition, from the probe answers of ``dat.eval.stability.measure``: JSON, table, plot.

Stability at round r under a condition is the mean probe score over every (task, seed) probed at that
round, with a 68 % percentile bootstrap interval (the persona-drift benchmark's convention) that
resamples *prompts*: the tasks of one prompt (its partners, topics and seeds) move together. Each
condition is also compared with the unsteered one, pairing the same (task, seed) at the same round.
Probes that were not asked (the dialogue had ended) or whose judgement failed are counted, never averaged.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dat.eval.stability import BASELINE, ProbeAnswer
from dat.eval.stats import bootstrap_ci, paired_difference

LEVEL = 0.68


def _table(answers: Sequence[ProbeAnswer]) -> tuple[dict[tuple[str, int], dict[tuple[str, int], float]], list]:
    """(condition, round) -> {(task, seed): score (NaN: missing)}, and the (task, seed, prompt) keys in order."""
    cells: dict[tuple[str, int], dict[tuple[str, int], float]] = {}
    keys: dict[tuple[str, int], str] = {}
    for a in answers:
        cells.setdefault((a.condition, a.round), {})[(a.task_id, a.seed)] = (
            float(a.score) if a.score is not None else float("nan"))
        keys.setdefault((a.task_id, a.seed), a.prompt_id)
    return cells, [(task, seed, prompt) for (task, seed), prompt in keys.items()]


def summarize(answers: Sequence[ProbeAnswer], level: float = LEVEL, seed: int = 0,
              n_boot: int = 2000) -> dict[str, Any]:
    """Plain data: per condition and round, mean, interval, counts and the paired difference to unsteered.

    ``{"level", "unit": "prompt", "rounds": [1..R], "conditions": [...], "results": {condition: [{"round",
    "mean", "low", "high", "n", "n_missing", "diff": PairedResult dict | None}, ...]}, "overall": {condition:
    {"mean", "low", "high", "diff"}}}``; ``overall`` averages each (task, seed)'s rounds first.
    """
    cells, keys = _table(answers)
    conditions = list(dict.fromkeys(a.condition for a in answers))
    rounds = sorted({a.round for a in answers})
    groups = [prompt for _, _, prompt in keys]

    def column(condition: str, rnd: int) -> np.ndarray:
        cell = cells.get((condition, rnd), {})
        return np.array([cell.get((task, s), np.nan) for task, s, _ in keys], float)

    def per_item(condition: str) -> np.ndarray:
        """Each (task, seed)'s mean over the rounds it was scored at (NaN when never)."""
        with warnings.catch_warnings():  # a (task, seed) never scored stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(np.stack([column(condition, r) for r in rounds]), axis=0) if rounds else np.array([])

    items = {c: per_item(c) for c in conditions}  # the baseline's is paired with every other condition
    results: dict[str, list[dict[str, Any]]] = {}
    overall: dict[str, dict[str, Any]] = {}
    for c in conditions:
        rows = []
        for rnd in rounds:
            values = column(c, rnd)
            mean, low, high = bootstrap_ci(values, level, n_boot, seed, groups=groups)
            diff = None
            if c != BASELINE and BASELINE in conditions:
                diff = paired_difference(values, column(BASELINE, rnd), groups, level, n_boot, seed, 2000).to_dict()
            rows.append({"round": rnd, "mean": mean, "low": low, "high": high, "n": int((~np.isnan(values)).sum()),
                         "n_missing": int(np.isnan(values).sum()), "diff": diff})
        results[c] = rows
        mean, low, high = bootstrap_ci(items[c], level, n_boot, seed, groups=groups)
        diff = None
        if c != BASELINE and BASELINE in conditions:
            diff = paired_difference(items[c], items[BASELINE], groups, level, n_boot, seed, 2000).to_dict()
        overall[c] = {"mean": mean, "low": low, "high": high, "diff": diff}
    return {"level": level, "unit": "prompt", "rounds": rounds, "conditions": conditions, "results": results,
            "overall": overall, "n_prompts": len(set(groups)), "n_dialogues": len(keys)}


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _diff_cell(d: Mapping[str, Any]) -> str:
    return f"{d['mean_diff']:+.2f} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]" if d["n_pairs"] else "n/a"


def markdown(summary: Mapping[str, Any]) -> str:
    """Two tables: stability 'mean [low, high]' per condition and round, then the paired differences to unsteered."""
    rounds, pct = summary["rounds"], f"{100 * summary['level']:g}%"
    header = ["condition", *(f"round {r}" for r in rounds), "all rounds"]

    def table(rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |",
                *("| " + " | ".join(r) + " |" for r in rows)]

    rows = []
    for c in summary["conditions"]:
        cells = [f"{_fmt(e['mean'])} [{_fmt(e['low'])}, {_fmt(e['high'])}]" for e in summary["results"][c]]
        o = summary["overall"][c]
        rows.append([c, *cells, f"{_fmt(o['mean'])} [{_fmt(o['low'])}, {_fmt(o['high'])}]"])
    out = [f"Stability (mean probe score [{pct} interval], resampling prompts; {summary['n_prompts']} prompts, "
           f"{summary['n_dialogues']} dialogues per condition):", "", *table(rows)]
    diffs = []
    for c in summary["conditions"]:
        entries = summary["results"][c]
        if entries and entries[0]["diff"] is not None:
            whole = summary["overall"][c].get("diff")
            diffs.append([c, *(_diff_cell(e["diff"]) for e in entries), _diff_cell(whole) if whole else ""])
    if diffs:
        out += ["", f"Paired difference to {BASELINE} (same task and seed, {pct} interval):", "", *table(diffs)]
    missing = {c: sum(e["n_missing"] for e in summary["results"][c]) for c in summary["conditions"]}
    if any(missing.values()):
        out += ["", "Probes not scored (dialogue ended early or judgement failed): "
                + ", ".join(f"{c} {n}" for c, n in missing.items() if n)]
    return "\n".join(out)


def plot(summary: Mapping[str, Any], path: str | Path, title: str = "Instruction stability") -> None:
    """Stability per round, one line per condition, its interval shaded."""
    fig = Figure(figsize=(7.5, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for c in summary["conditions"]:
        entries = summary["results"][c]
        x = [e["round"] for e in entries]
        mean = np.array([e["mean"] for e in entries], float)
        low = np.array([e["low"] if e["low"] is not None else np.nan for e in entries], float)
        high = np.array([e["high"] if e["high"] is not None else np.nan for e in entries], float)
        (line,) = ax.plot(x, mean, marker="o", label=c)
        ax.fill_between(x, low, high, color=line.get_color(), alpha=0.18, linewidth=0)
    ax.set_xlabel("round (steered agent's turn)")
    ax.set_ylabel(f"probe score (mean, {100 * summary['level']:g}% interval)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(summary["rounds"])
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    return x


def write(summary: Mapping[str, Any], out: Path, metadata: Mapping[str, Any]) -> dict[str, Path]:
    """``stability.json`` (every number, NaN as null), ``stability.md`` (setup + tables), ``stability.png``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "stability.json", "markdown": out / "stability.md", "png": out / "stability.png"}
    paths["json"].write_text(json.dumps(_jsonable({**summary, "metadata": dict(metadata)}), indent=2))
    setup = "\n".join(f"- {k}: {v}" for k, v in metadata.items())
    paths["markdown"].write_text(f"# Instruction stability\n\n{setup}\n\n{markdown(summary)}\n")
    plot(summary, paths["png"], f"Instruction stability ({metadata.get('model', '')})")
    return paths


def flat_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``stability/<condition>/mean``, ``low``, ``high`` over all rounds, and ``diff`` (the paired difference
    to unsteered) where there is one, for a tracker summary."""
    out: dict[str, float] = {}
    for c, o in summary["overall"].items():
        for k in ("mean", "low", "high"):
            out[f"stability/{c}/{k}"] = float(o[k])
        if o.get("diff"):
            out[f"stability/{c}/diff"] = float(o["diff"]["mean_diff"])
    return out
