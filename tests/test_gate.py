"""The steerability gate as a command (``dat gate``): the protocol on the tiny model, its JSON and its verdict."""

from __future__ import annotations

from dat_pipeline import CONF

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from dat.action import steerability as st
from dat.config import GateRunConfig, register_configs, to_config
from dat.eval import gate as protocol
from dat.eval.gate import GateConfig

ROOT = CONF.parents[1]
SMALL = ["debug=tiny", "gate.prompts=2", "gate.actions=3", "gate.fresh=2", "gate.baseline=4",
         "gate.max_new_tokens=6", "gate.believability=false"]


def composed(*overrides: str, small: bool = True) -> GateRunConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return to_config(compose("gate", overrides=[*(SMALL if small else []), *overrides]), GateRunConfig)


@pytest.mark.slow
def test_dat_gate_prints_every_criterion_and_writes_its_measurements(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "gate.py"), *SMALL, f"output_dir={tmp_path}",
                           f"hydra.run.dir={tmp_path / 'hydra'}", f"model.cache_dir={tmp_path / 'cache'}"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]  # a failed gate is a result, not an error
    record = json.loads((tmp_path / "gate.json").read_text())
    result = record["result"]
    assert record["seed"] == 0 and record["prefix"]["kind"] == "pca" and len(record["prompts"]) == 2
    assert result["name"] == "pca" and result["held_out"] and result["scenarios"] == "bundled:eval"
    for reward in protocol.REWARDS:
        samples = np.array(result["rewards"][reward]["raw"]["samples"])
        assert samples.shape == (2, 3, protocol.SAMPLES)
    assert (result["gate"], result["gate_reasons"]) == tuple(st.gate(result))
    shown = done.stdout.splitlines()
    first = shown.index(f"gate: {'PASS' if result['gate'] else 'fail'} (pca)")
    assert shown[first + 1:first + 1 + len(result["gate_reasons"])] == [f"  {r}" for r in result["gate_reasons"]]
    assert any("log-prob cost" in r for r in result["gate_reasons"])


def test_the_gate_refuses_prompts_the_action_space_was_made_on(tmp_path):
    from dat_pipeline.gate import gate

    cfg = composed("gate.scenarios=bundled:train", f"output_dir={tmp_path}", f"model.cache_dir={tmp_path / 'c'}")
    result = gate(cfg)
    assert not result["held_out"] and not result["gate"]
    assert result["gate_reasons"][0].startswith("measured on split 'train'")


def test_random_actions_cover_the_whole_action_space_null_point_included(tmp_path):
    from dat_pipeline.gate import gate

    basis = ["prefix.kind=behaviours", "prefix.action_dim=2", "prefix.null_action=true", "prefix.depth=layers",
             "gate.actions=6", "behaviours.steps=2",
             "behaviours.pool=4", "behaviours.prompts=2", "behaviours.sampling.max_new_tokens=6",
             "behaviours.behaviours=[{name:long,scorer:length,direction:up},{name:short,scorer:length,direction:down}]"]
    cfg = composed(*basis, f"output_dir={tmp_path}", f"model.cache_dir={tmp_path / 'c'}")
    result = gate(cfg)
    assert np.array(result["rewards"]["sentiment"]["raw"]["samples"]).shape == (2, 6, protocol.SAMPLES)
    # a behaviour basis is also measured on each behaviour's own scorer, and each prefix's effect on every score
    assert set(result["behaviours"]) == {"long", "short"}
    assert set(st.behaviour_checks(result)) == {"long", "short"}
    assert set(result["effects"]) == {"long", "short", "none"}  # null-point rows (no prefix) beside deep prefixes
    for group in result["effects"].values():
        assert {"sentiment", "goal", "keyword", "behaviour:long", "behaviour:short"} == set(group["shift"])
        # one length, two orientations: "short" scores the negated length, so the shifts mirror each other
        assert group["shift"]["behaviour:short"]["mean"] == pytest.approx(-group["shift"]["behaviour:long"]["mean"])


def test_each_prefixs_effect_is_its_actions_mean_less_the_unsteered_mean_per_prompt():
    """Actions grouped by the behaviour the softmax picks (the largest logit; the last is the null point), a
    score's shift averaged over prompts with its SE: a hand-computed example."""
    from types import SimpleNamespace

    projection = SimpleNamespace(cfg=SimpleNamespace(null_action=True))
    actions = torch.tensor([[0.9, 0.1, 0.0], [0.0, 0.8, 0.1], [0.1, 0.0, 0.7], [0.5, -0.2, 0.3]])  # a, b, none, a
    own = np.array([[[1, 1], [0, 0], [0, 0], [1, 0]],          # prompt 0
                    [[1, 0], [0, 0], [1, 1], [0, 0]]], float)  # prompt 1
    fluency = -np.arange(16, dtype=float).reshape(2, 4, 2)  # prompt p, action k, sample s: -(8p + 2k + s)
    table = {"behaviour:a": own, "behaviour:b": 1 - own, "fluency": fluency, "degenerate": own}
    base = {"summary": {"per_prompt": {"behaviour:a": [0.25, 0.5], "behaviour:b": [0.75, 0.5]}, "fluency": -1.0}}
    out = protocol.effects(projection, actions, table, base, ("behaviour:a", "behaviour:b"))
    assert {k: v["actions"] for k, v in out.items()} == {"a": 2, "b": 1, "none": 1}
    # "a" on prompt 0: mean of actions 0 and 3 = 0.75, less 0.25 = 0.5; on prompt 1: 0.25 - 0.5 = -0.25
    assert out["a"]["shift"]["behaviour:a"]["mean"] == pytest.approx(0.125)
    assert out["a"]["shift"]["behaviour:a"]["se"] == pytest.approx(np.std([0.5, -0.25], ddof=1) / np.sqrt(2))
    assert out["a"]["shift"]["behaviour:b"]["mean"] == pytest.approx(-0.125)
    assert out["none"]["shift"]["behaviour:a"]["mean"] == pytest.approx(((0 - 0.25) + (1 - 0.5)) / 2)
    # which prefix costs fluency: "a" (actions 0 and 3) averages -(0+1+6+7+8+9+14+15)/8 = -7.5, a cost of 6.5 nats
    assert out["a"]["cost"] == pytest.approx(6.5) and out["b"]["cost"] == pytest.approx(5.5)
    assert out["a"]["degenerate"] == pytest.approx(0.5) and out["b"]["degenerate"] == 0.0


def test_presets_and_settings_compose_for_the_gate():
    cfg = composed("prefix=behaviours_angry", "seed=3", "gate.scenarios=moods:eval", "gate.actions=5", small=False)
    assert cfg.prefix.kind == "behaviours" and cfg.behaviours.name == "sentiment_angry_b05" and cfg.seed == 3
    assert cfg.gate.scenarios == "moods:eval" and cfg.gate.actions == 5 and cfg.gate.prompts == GateConfig().prompts
    with pytest.raises(ValueError, match=r"gate\.actions=0 must be at least 1"):
        GateConfig(actions=0).validate()
