"""The steerability picture, drawn from the JSON results of the steerability study (no model, nothing re-run).

For every action space: the same-action correlation of each cheap reward (± SE) and the best-of-K advantage on
fresh samples (in SE), one marker per reward and result file, with the gate's two thresholds drawn
(``dat.action.steerability.MIN_CORRELATION`` and ``MIN_BEST_OF_K_Z``). One picture per split (``plot_all``);
``experiments/steerability_plot.py`` draws them from a checkout's ``benchmarks/results/steerability*.json``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dat.action.steerability import MIN_BEST_OF_K_Z, MIN_CORRELATION

REWARDS = {"sentiment": "tab:orange", "goal": "tab:blue", "keyword": "tab:green"}
"""The benchmark's cheap rewards and their colours."""
MARKERS = ("o", "s", "^", "D", "v")
"""One marker per result file (seed / replication) in a picture."""
NOISE = "no prefix (noise)"


def run_label(results: dict) -> str:
    """How a result file is named in the legend: its seed and number of random actions (and its dtype when the
    model ran in another than float32)."""
    settings = results.get("settings", {})
    dtype = settings.get("dtype", "float32")
    return f"seed {settings.get('seed', '?')}, K = {settings.get('actions', '?')}" + (
        "" if dtype == "float32" else f", {dtype}")


def rows(runs: Sequence[dict]) -> list[str]:
    """Configurations in the order they first appear in the files (the noise baseline first)."""
    names = [NOISE]
    for results in runs:
        for name in {**results.get("configs", {}), **results.get("tried", {})}:
            if name not in names:
                names.append(name)
    return names


def plot_steerability(paths: Sequence[Path], out: Path) -> Path:
    """Draw the benchmark results in ``paths`` (``steerability*.json`` files of one split) into the PNG ``out``."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(steerability_figure(runs)).print_png(str(out))
    return out


def steerability_figure(runs: Sequence[dict]) -> Figure:
    """The picture of benchmark results (the parsed ``steerability*.json`` files of one split).

    Left: same-action correlation per reward with its SE (the gate needs ``MIN_CORRELATION`` on some reward);
    the top row is the no-prefix baseline's pseudo-actions, i.e. what noise gives. Right: best-of-K advantage
    of the action chosen on 2 samples, on fresh samples, in SE (the gate needs ``MIN_BEST_OF_K_Z``). A label
    says on how many of the files the configuration passed the whole gate.
    """
    if not runs:
        raise ValueError("no steerability results to plot; run experiments/steerability.py first.")
    names = rows(runs)
    labels = []
    for name in names:
        entries = [r.get("configs", {}).get(name) or r.get("tried", {}).get(name) for r in runs]
        gates = [e["gate"] for e in entries if e and "gate" in e]
        passes = sum(gates)
        labels.append(name if not gates or not passes else f"{name}  [passes {passes}/{len(gates)}]")
    fig = Figure(figsize=(13, 1.6 + 0.42 * len(names)), layout="constrained")
    corr_ax, bok_ax = fig.subplots(1, 2, sharey=True)
    slots = len(REWARDS) * len(runs)
    step = 0.7 / max(slots, 1)
    for j, results in enumerate(runs):
        marker = MARKERS[j % len(MARKERS)]
        for i, name in enumerate(names):
            entry = results.get("baseline") if name == NOISE else (
                results.get("configs", {}).get(name) or results.get("tried", {}).get(name))
            if not entry:
                continue
            for r, (reward, colour) in enumerate(REWARDS.items()):
                stats = entry["rewards"].get(reward)
                if not stats:
                    continue
                y = i - 0.35 + step * (r * len(runs) + j + 0.5)
                corr = stats["corr"]
                corr_ax.errorbar(corr["corr"], y, xerr=corr.get("se"), fmt=marker, color=colour, ms=5,
                                 elinewidth=1, capsize=2)
                best = stats.get("best_of_k")
                if best:
                    bok_ax.plot(best["z"], y, marker, color=colour, ms=5)
    for ax, threshold, title in (
        (corr_ax, MIN_CORRELATION, "same-action correlation (± SE)"),
        (bok_ax, MIN_BEST_OF_K_Z, "best-of-K advantage (SE, fresh samples)"),
    ):
        ax.axvline(threshold, color="crimson", ls="--", lw=1.2)
        ax.axvline(0, color="grey", lw=0.8)
        ax.annotate(f"gate ≥ {threshold:g}", (threshold, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", color="crimson", fontsize=9)
        ax.set_title(title)
        ax.grid(axis="x", alpha=0.3)
        for i in range(len(names) - 1):
            ax.axhline(i + 0.5, color="0.9", lw=0.6)
    corr_ax.set_yticks(range(len(names)), labels)
    corr_ax.set_ylim(len(names) - 0.5, -0.5)
    for tick, name in zip(corr_ax.get_yticklabels(), labels, strict=True):
        if "[passes" in name:
            tick.set_fontweight("bold")
    handles = [Line2D([], [], ls="", marker="s", color=c, label=reward) for reward, c in REWARDS.items()]
    handles += [Line2D([], [], ls="", marker=MARKERS[j % len(MARKERS)], color="0.3", label=run_label(r))
                for j, r in enumerate(runs)]
    split = runs[0].get("settings", {}).get("split", "?")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), frameon=False)  # wraps
    fig.suptitle(f"Steerability of each action space ({split} split, model {runs[0].get('model', '?')})")
    return fig


def plot_all(results: Path) -> list[Path]:
    """One picture per split of the ``steerability*.json`` files in ``results``: ``steerability.png`` for the
    held-out split the gate reads, ``steerability_<split>.png`` for any other. Returns the files written."""
    by_split: dict[str, list[Path]] = {}
    for path in sorted(results.glob("steerability*.json"), key=lambda p: (p.stem != "steerability", p.name)):
        split = json.loads(path.read_text()).get("settings", {}).get("split", "eval")
        by_split.setdefault(split, []).append(path)
    return [plot_steerability(paths, results / ("steerability.png" if split == "eval" else f"steerability_{split}.png"))
            for split, paths in by_split.items()]
