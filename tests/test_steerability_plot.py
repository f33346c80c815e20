"""The steerability picture (``dat.eval.gate_plot``, drawn by ``experiments/steerability_plot.py``) from small result
files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from dat.action.steerability import MIN_BEST_OF_K_Z, MIN_CORRELATION
from dat.eval.gate_plot import NOISE, plot_all, plot_steerability, rows, steerability_figure


def rewards(corr: float, z: float | None) -> dict:
    entry = {"corr": {"corr": corr, "se": 0.1}}
    if z is not None:
        entry["best_of_k"] = {"z": z}
    return {name: dict(entry) for name in ("sentiment", "goal", "keyword")}


def results(split: str, seed: int, configs: dict[str, tuple[float, float, bool]]) -> dict:
    return {"model": "tiny", "settings": {"split": split, "seed": seed, "actions": 4},
            "baseline": {"rewards": rewards(0.0, None)},
            "configs": {name: {"rewards": rewards(c, z), "gate": gate} for name, (c, z, gate) in configs.items()}}


def test_one_picture_per_split_with_every_configuration(tmp_path):
    (tmp_path / "steerability.json").write_text(json.dumps(results("eval", 0, {"a": (0.5, 3.0, True),
                                                                                "b": (0.0, 0.1, False)})))
    (tmp_path / "steerability_seed1.json").write_text(json.dumps(results("eval", 1, {"a": (0.4, 2.5, False),
                                                                                     "c": (0.1, 1.0, False)})))
    (tmp_path / "steerability_train.json").write_text(json.dumps(results("train", 0, {"b": (0.2, 1.0, False)})))
    written = plot_all(tmp_path)
    assert sorted(p.name for p in written) == ["steerability.png", "steerability_train.png"]
    for path in written:
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 500
        assert float(np.std(image[..., :3])) > 0.05  # something is drawn
    eval_runs = [json.loads((tmp_path / f"steerability{s}.json").read_text()) for s in ("", "_seed1")]
    assert rows(eval_runs) == [NOISE, "a", "b", "c"]  # the noise baseline first, then in order of appearance


def test_the_gate_thresholds_are_drawn_where_the_gate_puts_them():
    fig = steerability_figure([results("eval", 0, {"a": (0.5, 3.0, True), "b": (0.0, 0.1, False)})])
    correlation, best_of_k = fig.axes[:2]
    for ax, threshold in ((correlation, MIN_CORRELATION), (best_of_k, MIN_BEST_OF_K_Z)):
        dashed = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert dashed == [threshold]
    labels = [tick.get_text() for tick in correlation.get_yticklabels()]
    assert labels == [NOISE, "a  [passes 1/1]", "b"]


def test_no_results_is_explained(tmp_path):
    with pytest.raises(ValueError, match="run experiments/steerability.py"):
        plot_steerability([], tmp_path / "x.png")


@pytest.mark.slow
def test_the_script_redraws_the_pictures_from_the_real_results(tmp_path):
    """``python experiments/steerability_plot.py`` (as docs/results/steerability.md gives it), on copies of the
    measured results."""
    root = Path(__file__).resolve().parents[1]
    for path in (root / "benchmarks" / "results").glob("steerability*.json"):
        shutil.copy2(path, tmp_path / path.name)
    done = subprocess.run([sys.executable, "experiments/steerability_plot.py", "--results", str(tmp_path)], cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "steerability.png").is_file()
    assert str(tmp_path / "steerability.png") in done.stdout
