"""The steerability gate as a command (``dat gate``): the protocol on the tiny model, its JSON and its verdict."""

from __future__ import annotations

from dat_pipeline import CONF

import json
import subprocess
import sys

import numpy as np
import pytest
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

    basis = ["prefix.kind=behaviours", "prefix.action_dim=2", "prefix.null_action=true", "behaviours.steps=2",
             "behaviours.pool=4", "behaviours.prompts=2", "behaviours.sampling.max_new_tokens=6",
             "behaviours.behaviours=[{name:long,scorer:length,direction:up},{name:short,scorer:length,direction:down}]"]
    cfg = composed(*basis, f"output_dir={tmp_path}", f"model.cache_dir={tmp_path / 'c'}")
    result = gate(cfg)
    assert np.array(result["rewards"]["sentiment"]["raw"]["samples"]).shape == (2, 3, protocol.SAMPLES)


def test_presets_and_settings_compose_for_the_gate():
    cfg = composed("prefix=behaviours_angry", "seed=3", "gate.scenarios=moods:eval", "gate.actions=5", small=False)
    assert cfg.prefix.kind == "behaviours" and cfg.behaviours.name == "sentiment_angry_b05" and cfg.seed == 3
    assert cfg.gate.scenarios == "moods:eval" and cfg.gate.actions == 5 and cfg.gate.prompts == GateConfig().prompts
    with pytest.raises(ValueError, match=r"gate\.actions=0 must be at least 1"):
        GateConfig(actions=0).validate()
