"""Report files: the JSON keeps every number (NaN as null), the Markdown shows them, the PNGs are images."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from dat.eval.report import flat_metrics, learning_curves, markdown_table, write_report
from dat.eval.stats import summarize_conditions


@pytest.fixture(scope="module")
def summary() -> dict:
    rng = np.random.default_rng(0)
    base = rng.normal(5.0, 1.0, 16)
    scores = {
        "unsteered": {"goal": base, "relationship": rng.normal(0.0, 1.0, 16)},
        "steered": {"goal": base + 0.8 + rng.normal(0, 0.3, 16), "relationship": rng.normal(1.0, 1.0, 16)},
        "prompted": {"goal": np.full(16, np.nan), "relationship": rng.normal(0.5, 1.0, 16)},
    }
    scores["steered"]["goal"][3] = np.nan
    return summarize_conditions(scores, groups=[f"s{i % 4}" for i in range(16)], n_boot=1000, n_perm=1000,
                                versus=("steered", "prompted"))


def _cell(e: dict) -> str:
    return f"{e['mean']:.2f} [{e['low']:.2f}, {e['high']:.2f}]"


def test_markdown_table_contains_the_numbers(summary: dict) -> None:
    md = markdown_table(summary)
    goal = summary["results"]["steered"]["goal"]
    assert _cell(goal) + " (1 failed)" in md
    d = goal["diff"]
    assert f"+{d['mean_diff']:.2f} [{d['ci_low']:.2f}, {d['ci_high']:.2f}] (p={d['p_value']:.3f})" in md
    assert "| prompted | n/a [n/a, n/a] (16 failed) |" in md  # every judgement failed: no number invented
    assert "| condition | goal | relationship |" in md and "Δ goal" in md
    assert md.count("| unsteered |") == 1  # the baseline has no row in the difference table
    only = markdown_table(summary, dimensions=["relationship"])
    assert "goal" not in only.split("\n\n")[1]
    with pytest.raises(ValueError, match="not in the summary"):
        markdown_table(summary, dimensions=["humour"])


def test_write_report_files(summary: dict, tmp_path: Path) -> None:
    meta = {"model": "tiny-llama", "judge": "rule", "episodes": 16, "seeds": "0-3", "scenarios": 4,
            "machine": "2 CPU cores"}
    paths = write_report(summary, tmp_path / "eval", metadata=meta)
    assert sorted(p.name for p in paths.values()) == ["evaluation.json", "evaluation.md", "evaluation.png"]
    data = json.loads(paths["json"].read_text())  # strict JSON: NaN became null
    assert data["metadata"] == meta
    assert data["results"]["prompted"]["goal"]["mean"] is None
    p_value = summary["results"]["steered"]["goal"]["diff"]["p_value"]
    assert data["results"]["steered"]["goal"]["diff"]["p_value"] == p_value
    md = paths["markdown"].read_text()
    for line in ("- **model**: tiny-llama", "- **judge**: rule", "- **episodes**: 16", "- **scenarios**: 4",
                 "- **machine**: 2 CPU cores", "- **baseline**: unsteered"):
        assert line in md
    assert "95% percentile bootstrap (1000 resamples of scenarios)" in md
    assert markdown_table(summary) in md
    assert "as few as 4 scenarios" in md
    img = mpimg.imread(paths["png"])
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.shape[0] > 100 and img.std() > 0.01


def test_flat_metrics(summary: dict) -> None:
    m = flat_metrics(summary, headline="goal")
    d = summary["results"]["steered"]["goal"]
    assert m["eval/steered/goal/mean"] == d["mean"] == m["eval/steered/mean"]
    assert m["eval/steered/p_value"] == d["diff"]["p_value"] and m["eval/steered/n_failed"] == 1.0
    assert "eval/unsteered/diff" not in m and math.isnan(m["eval/prompted/goal/mean"])
    assert "eval/steered/relationship/mean" in m and "eval/steered/relationship/diff" in m


def test_learning_curves_png(tmp_path: Path) -> None:
    history = [
        {"round": r, "eval/steered/mean": 0.1 * r, "eval/steered/low": 0.1 * r - 0.05,
         "eval/steered/high": 0.1 * r + 0.05, "eval/unsteered/mean": 0.2,
         "train/critic_loss": 1.0 / (r + 1), "train/actor_loss": -0.5 * r}
        for r in range(4)
    ]
    history[0].pop("train/actor_loss")  # no update yet in round 0: a gap, not a zero
    path = tmp_path / "curves" / "learning.png"
    learning_curves(history, path)
    img = mpimg.imread(path)
    assert img.shape[1] > img.shape[0] > 100 and img.std() > 0.01  # two panels side by side
    learning_curves([], tmp_path / "empty.png")  # nothing to plot yet is not an error
    assert mpimg.imread(tmp_path / "empty.png").ndim == 3


def test_a_second_comparison_is_shown_and_flattened(summary: dict) -> None:
    versus = summary["versus"]
    assert (versus["treated"], versus["control"]) == ("steered", "prompted")
    assert set(versus["results"]) == {"relationship", "goal"}  # goal: every control judgement failed
    r = versus["results"]["relationship"]
    md = markdown_table(summary)
    assert "`steered` against `prompted`" in md
    assert f"{r['mean_diff']:+.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] (p={r['p_value']:.3f})" in md
    flat = flat_metrics(summary, headline="relationship")
    assert flat["eval/steered_vs_prompted/diff"] == pytest.approx(r["mean_diff"])
    assert math.isnan(flat["eval/steered_vs_prompted/goal/diff"])
    no_control = summarize_conditions({"unsteered": {"goal": np.ones(4)}, "steered": {"goal": np.ones(4)}},
                                      versus=("steered", "zero"))
    assert "versus" not in no_control and "against" not in markdown_table(no_control)
