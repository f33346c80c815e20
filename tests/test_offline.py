"""Offline training from datasets: ``dat collect`` then ``train.py dataset=...``, end to end on the tiny model.

Training on a dataset is training on the same transitions from the buffer; a dataset of other settings is
refused before any update; the state settings and the "do not steer" point travel through checkpoint and export.
"""

from __future__ import annotations

from dat_pipeline import CONF
from dat_pipeline import collect as collect_module
from dat_pipeline import train as train_module

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from dat.config import CollectRunConfig, TrainConfig, to_config
from dat.dialogue.dataset import Dataset, read_episodes
from dat.rl.buffer import add_episode
from dat.rl.export import DATPolicy
from dat.rl.td3bc import TD3BC

ROOT = Path(__file__).resolve().parents[1]
TINY = ["debug=tiny", "logger=none", "env.state_pool=mean", "env.state_layer=1"]


def compose_config(name: str, schema, tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=[*TINY, f"model.cache_dir={tmp_path / 'cache'}", *overrides])
    return to_config(cfg, schema)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("data")
    cfg = compose_config("collect", CollectRunConfig, tmp, "collect.episodes=12", "collect.batch_size=8",
                         f"collect.out={tmp / 'd'}")
    figures = collect_module.collect(cfg)
    assert figures["episodes"] == 12 and figures["played"] == 12
    again = collect_module.collect(cfg)  # the same command again: nothing left to play
    assert again["played"] == 0
    return tmp / "d"


def test_a_collected_dataset_is_greedy_random_and_says_what_it_holds(dataset):
    card = json.loads((dataset / "card.json").read_text())
    assert card["behaviour"] == "random" and card["decoding"]["do_sample"] is False and card["episodes"] == 12
    assert card["settings"]["state"] == {"layer": 1, "pool": "mean", "hidden": 64}
    assert card["settings"]["model"] == "tiny-random" and len(card["settings"]["action_space"]["fingerprint"]) == 16
    episodes = read_episodes(dataset)
    actions = np.concatenate([e.actions for e in episodes])
    assert actions.min() < -0.5 and actions.max() > 0.5 and (dataset / "projection" / "projection.json").is_file()


def test_training_on_a_dataset_equals_training_on_its_transitions_from_the_buffer(dataset, tmp_path):
    cfg = compose_config("train", TrainConfig, tmp_path, f"dataset={dataset}")
    from gymnasium import spaces

    obs = spaces.Box(-np.inf, np.inf, (64,), np.float32)
    act = spaces.Box(-1.0, 1.0, (cfg.prefix.planner_dim,), np.float32)
    from_data = TD3BC.from_config(cfg.algo, observation_space=obs, action_space=act, seed=3)
    assert train_module.load_dataset(from_data, Dataset(dataset)) == 12
    by_hand = TD3BC.from_config(cfg.algo, observation_space=obs, action_space=act, seed=3)
    for e in read_episodes(dataset):
        add_episode(by_hand.replay_buffer, e.states, e.next_states, e.actions, e.rewards, terminated=bool(e.dones[-1]))
    for algo in (from_data, by_hand):
        algo.fit_normalizer()
        algo.set_random_seed(3)  # the buffer samples from the global streams: the same draws for both
        algo.learn_offline(15)
    for a, b in zip(from_data.actor.parameters(), by_hand.actor.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_dataset_runs_offline_and_the_state_travels_to_checkpoint_and_export(dataset, tmp_path):
    out = tmp_path / "run"
    cfg = compose_config("train", TrainConfig, tmp_path, f"dataset={dataset}", "loop.rounds=2", f"output_dir={out}")
    metrics = train_module.train(cfg)
    assert "eval/policy/mean" in metrics and not (out / "episodes").exists()  # nothing collected
    state = json.loads(sorted((out / "checkpoints").glob("round-*/state.json"))[-1].read_text())
    assert state["episodes"] == 12 and state["settings"]["env.state_pool"] == "mean"
    assert state["settings"]["env.state_layer"] == 1 and state["settings"]["dataset"] == [str(dataset.resolve())]
    policy = DATPolicy.from_pretrained(out / "export")
    assert (policy.state_layer, policy.state_pool) == (1, "mean")
    changed = compose_config("train", TrainConfig, tmp_path, f"dataset={dataset}", "env.state_pool=last",
                             f"output_dir={tmp_path / 'other'}")
    with pytest.raises(ValueError, match=r"other settings than this run's \(settings.state.pool\)|state.pool"):
        train_module.train(changed)


def test_a_null_point_is_recorded_by_the_dataset_and_kept_by_the_export(tmp_path):
    behaviours = ["prefix.kind=behaviours", "prefix.action_dim=2", "prefix.null_action=true", "behaviours.pool=4",
                  "behaviours.top=1", "behaviours.steps=1", "behaviours.prompts=2", "env.max_turns=1",
                  "env.partner_opens=true"]
    collected = compose_config("collect", CollectRunConfig, tmp_path, *behaviours, "collect.episodes=6",
                               f"collect.out={tmp_path / 'd'}")
    collect_module.collect(collected)
    data = Dataset(tmp_path / "d")
    assert data.settings["action_space"]["prefix"]["null_action"] is True
    assert data.minari().action_space.shape == (3,)  # two behaviours and the null logit
    out = tmp_path / "run"
    cfg = compose_config("train", TrainConfig, tmp_path, *behaviours, f"dataset={tmp_path / 'd'}", "loop.rounds=1",
                         f"output_dir={out}")
    train_module.train(cfg)
    policy = DATPolicy.from_pretrained(out / "export")
    assert policy.projection.cfg.null_action and policy.settings["action_dim"] == 3
