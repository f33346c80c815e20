"""Turn an evaluation summary (``dat.eval.stats.summarize_conditions``) into files people read.

``evaluation.json`` keeps every number (NaN written as null so any JSON reader accepts it),
``evaluation.md`` puts the means and the paired differences in two tables under a header that says
what was evaluated and how (model, judge, episodes, seeds, scenarios, machine), and ``evaluation.png``
shows the same means with their intervals. A score without its setup cannot be compared with
anything: Sotopia numbers differ by more than a point between judge versions.

Plots use the Agg canvas directly (no pyplot), so they work headless and never touch global state.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

FEW_UNITS = 10
"""Below this many resampling units the report warns that bootstrap intervals under-cover."""


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _fmt_p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return "p=n/a"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _dims(summary: Mapping[str, Any], dimensions: Sequence[str] | None) -> list[str]:
    if dimensions is None:
        return list(summary["dimensions"])
    unknown = [d for d in dimensions if d not in summary["dimensions"]]
    if unknown:
        raise ValueError(f"dimensions {unknown} not in the summary; it has {summary['dimensions']}")
    return list(dimensions)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(summary: Mapping[str, Any], dimensions: Sequence[str] | None = None) -> str:
    """Two Markdown tables: 'mean [low, high]' per condition, then 'Δ [low, high] (p=…)' vs the baseline.

    A cell notes failed judgements, e.g. ``6.10 [5.80, 6.40] (2 failed)``, because a mean over fewer
    episodes than the others is not directly comparable.
    """
    dims = _dims(summary, dimensions)
    results, base = summary["results"], summary["baseline"]
    pct = f"{100 * summary['level']:g}%"
    rows = []
    for c in summary["conditions"]:
        row = [c]
        for d in dims:
            e = results[c].get(d)
            if e is None:
                row.append("–")
                continue
            cell = f"{_fmt(e['mean'])} [{_fmt(e['low'])}, {_fmt(e['high'])}]"
            row.append(cell + (f" ({e['n_failed']} failed)" if e["n_failed"] else ""))
        rows.append(row)
    out = [f"Mean [{pct} interval] per condition:", "", _table(["condition", *dims], rows)]
    diff_rows = []
    for c in summary["conditions"]:
        if c == base:
            continue
        row = [c]
        for d in dims:
            r = results[c].get(d, {}).get("diff")
            if r is None:
                row.append("–")
                continue
            row.append(_diff_cell(r))
        diff_rows.append(row)
    if diff_rows:
        out += ["", f"Paired difference to `{base}`, Δ [{pct} interval] (sign-flip p), resampling by "
                f"{summary['unit']}:", "", _table(["condition", *[f"Δ {d}" for d in dims]], diff_rows)]
    versus = summary.get("versus")
    if versus:
        row = [_diff_cell(versus["results"][d]) if d in versus["results"] else "–" for d in dims]
        head = [f"`{versus['treated']}` against `{versus['control']}`, the strongest baseline (what the planner adds "
                f"over the best a user could do without it), Δ [{pct} interval] (sign-flip p):", "",
                _table(["comparison", *[f"Δ {d}" for d in dims]],
                       [[f"{versus['treated']} − {versus['control']}", *row]])]
        out = [*head, "", *out]  # the first comparison a reader meets
    against = summary.get("policy_vs")
    if against:
        out += ["", f"`policy` against each baseline, Δ reward [{pct} interval] (sign-flip p):", "",
                _table(["baseline", "Δ reward"], [[c, _diff_cell(r)] for c, r in against.items()])]
    distinct = summary.get("distinct")
    if distinct:
        out += ["", "Share of distinct steered lines per condition:", "",
                _table(list(distinct), [[_fmt(v) for v in distinct.values()]])]
    return "\n".join(out) + "\n"


def _diff_cell(r: Mapping[str, Any]) -> str:
    sign = "+" if r["mean_diff"] >= 0 else ""
    return f"{sign}{_fmt(r['mean_diff'])} [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] ({_fmt_p(r['p_value'])})"


def _jsonable(x: Any) -> Any:
    """Replace NaN/inf by None and NumPy scalars by Python ones, recursively."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_report(
    summary: Mapping[str, Any],
    out_dir: str | Path,
    metadata: Mapping[str, Any] | None = None,
    dimensions: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write ``evaluation.json``, ``evaluation.md`` and ``evaluation.png`` into ``out_dir``.

    ``metadata`` describes the setup (e.g. model, judge, episodes, seeds, scenarios, machine); it is
    stored in the JSON and listed at the top of the Markdown. Returns the three paths by kind.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = dict(metadata or {})
    names = {"json": "evaluation.json", "markdown": "evaluation.md", "png": "evaluation.png"}
    paths = {kind: out / name for kind, name in names.items()}
    paths["json"].write_text(json.dumps(_jsonable({"metadata": meta, **summary}), indent=2) + "\n")
    header = ["# Evaluation", ""]
    header += [f"- **{k}**: {v}" for k, v in meta.items()]
    header += [
        f"- **baseline**: {summary['baseline']}",
        f"- **intervals**: {100 * summary['level']:g}% percentile bootstrap ({summary['n_boot']} resamples "
        f"of {summary['unit']}s); p-values from a two-sided sign-flip test over {summary['unit']}s",
        "- failed judgements are counted, not scored",
    ]
    units = [e["n_groups"] for per_dim in summary["results"].values() for e in per_dim.values() if e["n"]]
    if units and min(units) < FEW_UNITS:
        header.append(
            f"- **caution**: as few as {min(units)} {summary['unit']}s; percentile intervals are too "
            "narrow with few units, so read the (exact) p-values"
        )
    header.append("")
    paths["markdown"].write_text("\n".join(header) + "\n" + markdown_table(summary, dimensions))
    plot_summary(summary, paths["png"], dimensions)
    return paths


def _save(fig: Figure, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig).print_png(str(path))


def plot_summary(
    summary: Mapping[str, Any], path: str | Path, dimensions: Sequence[str] | None = None
) -> None:
    """Two panels. Left: the reward of every condition (mean and interval). Right: what matters, the paired
    difference of each condition to the baseline on every dimension, as a share of that dimension's range
    (goal 0..10, relationship -5..5, ...), so dimensions of different ranges share one axis."""
    from dat.judges.dimensions import RANGES

    dims, conds = _dims(summary, dimensions), list(summary["conditions"])
    treated = [c for c in conds if any(summary["results"][c].get(d, {}).get("diff") for d in dims)]
    fig = Figure(figsize=(11.0, 0.45 * len(dims) * max(1, len(treated)) + 2.2), dpi=100)
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    headline = "reward" if "reward" in dims else dims[0]
    for i, c in enumerate(conds):
        e = summary["results"][c].get(headline)
        if e is not None:
            left.errorbar([i], [e["mean"]], yerr=[[e["mean"] - e["low"]], [e["high"] - e["mean"]]], fmt="o", capsize=4,
                          color=f"C{i}")
    left.set_xticks(range(len(conds)))
    left.set_xticklabels(conds, rotation=20, ha="right")
    left.set_ylabel(f"{headline} (mean, {100 * summary['level']:g}% interval)")
    rows, labels = 0, []
    for d in dims:
        span = float(np.subtract(*RANGES[d][::-1])) if d in RANGES else 1.0
        for c in treated:
            diff = (summary["results"][c].get(d) or {}).get("diff")
            if diff:
                mid = diff["mean_diff"] / span
                err = [[mid - diff["ci_low"] / span], [diff["ci_high"] / span - mid]]
                right.errorbar([mid], [rows], xerr=err, fmt="o", capsize=3, color=f"C{conds.index(c)}")
            labels.append(f"{d}: {c}")
            rows += 1
    right.axvline(0.0, color="black", linewidth=0.8)
    right.set_yticks(range(rows))
    right.set_yticklabels(labels)
    right.invert_yaxis()
    right.set_xlabel(f"Δ to {summary.get('baseline', 'the baseline')}, share of the dimension's range "
                     f"({100 * summary['level']:g}% interval)")
    fig.tight_layout()
    _save(fig, path)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([float(h[key]) if h.get(key) is not None else np.nan for h in history], dtype=float)


def learning_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """Two panels per round: eval reward of every condition (band = interval), and the TD3+BC losses.

    ``history`` holds one metrics dict per round; conditions are found from keys ``eval/<cond>/mean``
    (with optional ``eval/<cond>/low`` and ``/high``), losses from ``train/critic_loss`` and
    ``train/actor_loss``. The round number is ``history[i]["round"]`` if present, else ``i``.
    Missing values are left as gaps rather than drawn as zeros.
    """
    rounds = np.array([h.get("round", i) for i, h in enumerate(history)], dtype=float)
    conds: list[str] = []
    for h in history:
        for k in h:
            parts = k.split("/")
            if len(parts) == 3 and parts[0] == "eval" and parts[2] == "mean" and parts[1] not in conds:
                conds.append(parts[1])
    fig = Figure(figsize=(10, 4), dpi=100)
    ax_eval, ax_loss = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for c in conds:
        (line,) = ax_eval.plot(rounds, _series(history, f"eval/{c}/mean"), marker="o", label=c)
        low, high = _series(history, f"eval/{c}/low"), _series(history, f"eval/{c}/high")
        if np.isfinite(low).any() and np.isfinite(high).any():
            ax_eval.fill_between(rounds, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax_eval.set(title="eval reward", xlabel="round", ylabel="reward")
    if conds:
        ax_eval.legend(frameon=False)
    ax_loss.plot(rounds, _series(history, "train/critic_loss"), marker="o", color="C0", label="critic loss")
    ax_loss.set(title="training losses", xlabel="round", ylabel="critic loss")
    for ax in (ax_eval, ax_loss):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_actor = ax_loss.twinx()  # the actor loss (-λQ + BC) lives on another scale, often negative
    ax_actor.plot(rounds, _series(history, "train/actor_loss"), marker="s", color="C1", label="actor loss")
    ax_actor.set_ylabel("actor loss")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_actor.get_legend_handles_labels()[0]
    ax_loss.legend(handles=handles, frameon=False)
    fig.tight_layout()
    _save(fig, path)


def flat_metrics(
    summary: Mapping[str, Any], prefix: str = "eval", headline: str | None = None
) -> dict[str, float]:
    """Flatten a summary into namespaced scalars for the tracker, e.g. ``eval/steered/goal/mean``.

    Paired results become ``…/diff``, ``…/diff_low``, ``…/diff_high``, ``…/p_value``. The ``headline``
    dimension (the reward, say) is repeated without its name, ``eval/steered/mean``, which is the key
    :func:`learning_curves` plots. A ``versus`` comparison becomes ``eval/<name>/…`` (its ``name``, else
    ``<treated>_vs_<control>``); the planner against each baseline (``policy_vs``) ``eval/policy_vs_<baseline>/…``
    (reward); each condition's distinct share ``eval/<condition>/distinct``.
    """
    out: dict[str, float] = {}
    for c, per_dim in summary["results"].items():
        for d, e in per_dim.items():
            vals = {k: e[k] for k in ("mean", "low", "high", "n", "n_failed")}
            if e["diff"] is not None:
                vals.update(_diff_values(e["diff"]))
            for k, v in vals.items():
                out[f"{prefix}/{c}/{d}/{k}"] = float(v)
                if d == headline:
                    out[f"{prefix}/{c}/{k}"] = float(v)
    versus = summary.get("versus")
    for d, r in (versus["results"].items() if versus else ()):
        name = f"{prefix}/{versus.get('name') or versus['treated'] + '_vs_' + versus['control']}"
        for k, v in _diff_values(r).items():
            out[f"{name}/{d}/{k}"] = float(v)
            if d == headline:
                out[f"{name}/{k}"] = float(v)
    for c, r in summary.get("policy_vs", {}).items():
        out.update({f"{prefix}/policy_vs_{c}/{k}": float(v) for k, v in _diff_values(r).items()})
    out.update({f"{prefix}/{c}/distinct": float(v) for c, v in summary.get("distinct", {}).items()})
    return out


def _diff_values(r: Mapping[str, Any]) -> dict[str, float]:
    """A paired result's scalars under their metric names."""
    return {"diff": r["mean_diff"], "diff_low": r["ci_low"], "diff_high": r["ci_high"], "p_value": r["p_value"]}
