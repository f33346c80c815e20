"""evaluate.py end to end on the tiny model: paired conditions, report files, failed judgements counted."""

from __future__ import annotations

from dat_pipeline import CONF
from dat_pipeline import evaluate as evaluate_module

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from hydra import compose, initialize_config_dir

from dat.action.projection import PrefixConfig, build_projection
from dat.config import to_config
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig
from dat.rl.export import DATPolicy
from dat.rl.td3bc import TD3BC, AlgoConfig, NetArch


def export_policy(tmp_path: Path, state_layer: int = -1, state_pool: str = "last") -> Path:
    lm = FrozenLM.load(ModelConfig(name="tiny-random", cache_dir=str(tmp_path / "cache")))
    obs = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
    act = spaces.Box(-1, 1, (8,), np.float32)
    algo = TD3BC.from_config(AlgoConfig(net_arch=NetArch([16], [16])), observation_space=obs, action_space=act,
                             seed=0)
    with torch.no_grad():  # a planner whose actions clearly differ from zero
        algo.actor.mu[-2].bias.fill_(2.0)
    projection = build_projection(lm.model.get_input_embeddings().weight, PrefixConfig(action_dim=8, norm=4.0))
    DATPolicy.from_trained(algo, projection, "tiny-random", state_layer, state_pool).save_pretrained(
        tmp_path / "export")
    return tmp_path / "export"


def test_evaluate_runs_paired_conditions_and_writes_the_report(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="evaluate")
    export = export_policy(tmp_path, state_layer=-2, state_pool="mean")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("evaluate", overrides=[
            "debug=tiny", f"policy={export}", "episodes_per_scenario=1", "max_tasks=4", "logger=none",
            f"model.cache_dir={tmp_path / 'cache'}", "held_out_judges=[rule]", "constant_tasks=4"])
    cfg = to_config(cfg, evaluate_module.EvaluateConfig)
    metrics = evaluate_module.evaluate(cfg, output_dir=tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    conditions = ["unsteered", "policy", "zero", "best_constant", "prompted", "random"]
    assert report["conditions"] == conditions
    assert report["unit"] == "scenario"
    # The planner reads the state it was exported with, whatever the env config says.
    assert report["metadata"]["state_layer"] == -2 and report["metadata"]["state_pool"] == "mean"
    for condition in conditions[1:]:
        entry = report["results"][condition]["reward"]
        assert entry["diff"]["n_pairs"] + entry["n_failed"] >= 4 - report["results"]["unsteered"]["reward"]["n_failed"]
        # the signs of reward hacking and the held-out judge's reward, per condition
        assert {"restates_goal", "copies_goal", "in_character", "reward@rule"} <= set(report["results"][condition])
    assert "eval/policy/diff" in metrics and "eval/unsteered/mean" in metrics
    assert report["versus"]["control"] in set(conditions) - {"policy"} and "eval/policy_vs_strongest/diff" in metrics
    assert set(report["policy_vs"]) == {"unsteered", "zero", "best_constant", "prompted", "random"}
    assert set(report["distinct"]) == set(conditions)
    assert report["metadata"]["best constant"].endswith("(chosen on the training tasks)")
    assert (tmp_path / "eval" / "evaluation.png").is_file()
    assert "| policy |" in (tmp_path / "eval" / "evaluation.md").read_text()
    seeds = {}
    for condition in conditions:
        lines = [json.loads(line) for p in sorted((tmp_path / "eval" / "episodes" / condition).glob("*.jsonl"))
                 for line in p.read_text().splitlines()]
        seeds[condition] = [(line["task_id"], line["seed"]) for line in lines]
    assert all(seeds[c] == seeds["unsteered"] for c in conditions)  # paired episodes
    assert len({task for task, _ in seeds["policy"]}) == 4  # K=1 episode on each of the 4 tasks
    # The 6 conditions' 24 episodes share one stream, as wide as batch_size allows (not one condition's 4).
    assert "24 dialogues in lockstep" in caplog.text


def test_a_policy_that_is_no_export_is_explained_before_any_work(tmp_path):
    export = export_policy(tmp_path)
    DATPolicy.check_source(export)  # an export passes
    with pytest.raises(ValueError, match=f"is a training run; its planner is in {tmp_path / 'export'}"):
        DATPolicy.check_source(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no DATPolicy export"):
        DATPolicy.check_source(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        DATPolicy.check_source(tmp_path / "missing")
    DATPolicy.check_source("someone/dat-planner")  # a Hub id is left to huggingface_hub


def test_the_transcripts_table_puts_conditions_side_by_side():
    from dat.dialogue.episodes import Episode
    from dat.eval.conditions import transcript_rows
    from dat.records import DialogueRecord, Utterance

    def episode(seed: int, text: str, reward: float) -> Episode:
        record = DialogueRecord("t/1", "s", ("A", "B"), ("", ""), ("g", "h"), (Utterance(0, text),), 0)
        empty = np.zeros((1, 2), np.float32)
        return Episode(record, empty, empty, np.zeros(1, np.float32), empty, np.ones(1, bool), np.zeros(1, bool),
                       None, reward, "t/1", 0, seed, False)

    runs = {"unsteered": [episode(1, "plain", 0.2)], "policy": [episode(1, "steered", 0.7)]}
    columns, rows = transcript_rows(runs)
    assert columns == ["task", "seed", "steered side", "unsteered reward", "policy reward", "unsteered transcript",
                       "policy transcript"]
    assert rows[0][:5] == ["t/1", 1, 0, 0.2, 0.7] and "plain" in rows[0][5] and "steered" in rows[0][6]
