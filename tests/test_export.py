"""DATPolicy: an export gives exactly the trained policy's actions and prefixes, offline, without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from gymnasium import spaces

from dat.action.projection import PrefixConfig, UpProjection, build_projection
from dat.rl.export import DATPolicy
from dat.rl.td3bc import TD3BC, AlgoConfig, NetArch
from tests.test_prefix import WordTokenizer


def trained_algo(normalize: bool) -> TD3BC:
    obs = spaces.Box(-np.inf, np.inf, (16,), np.float32)
    act = spaces.Box(-1, 1, (4,), np.float32)
    cfg = AlgoConfig(net_arch=NetArch(actor=[32, 32], critic=[32]), batch_size=8, normalize_states=normalize)
    algo = TD3BC.from_config(cfg, observation_space=obs, action_space=act, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(32):
        s = rng.normal(3.0, 2.0, (1, 16)).astype(np.float32)
        algo.replay_buffer.add(s, s, rng.uniform(-1, 1, (1, 4)), np.array([1.0]), np.array([True]), [{}])
    if normalize:
        algo.fit_normalizer()
    algo.learn_offline(10)
    return algo


@pytest.mark.parametrize("kind", ["pca", "learned", "anchors"])
@pytest.mark.parametrize("normalize", [True, False])
def test_export_round_trip_gives_same_actions(tmp_path, kind, normalize):
    algo = trained_algo(normalize)
    embedding = torch.randn(100, 16)
    words = ["yes", "no", "deal", "sorry"]
    cfg = PrefixConfig(kind=kind, action_dim=4, position="before_reply", anchors=words)
    projection = build_projection(embedding, cfg, tokenizer=WordTokenizer(["pad", *words]))
    policy = DATPolicy.from_trained(algo, projection, base_model="tiny-random")
    policy.save_pretrained(tmp_path / "export")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "export").iterdir()}
    loaded = DATPolicy.from_pretrained(tmp_path / "export")
    states = np.random.default_rng(1).normal(3.0, 2.0, (5, 16)).astype(np.float32)
    expected, _ = algo.predict(states, deterministic=True)
    assert np.allclose(loaded.act(torch.from_numpy(states)).numpy(), expected, atol=1e-6)
    assert torch.allclose(loaded(torch.from_numpy(states)), projection(torch.from_numpy(expected)), atol=1e-5)
    config = json.loads((tmp_path / "export" / "config.json").read_text())
    assert config["base_model"] == "tiny-random" and config["prefix"]["position"] == "before_reply"
    assert loaded.position == "before_reply"


def test_projection_survives_as_part_of_export(tmp_path):
    projection = UpProjection.pca(torch.randn(50, 16), PrefixConfig(action_dim=4, norm=3.0))
    policy = DATPolicy.from_trained(trained_algo(True), projection, base_model="m")
    policy.save_pretrained(tmp_path)
    loaded = DATPolicy.from_pretrained(tmp_path)
    assert torch.equal(loaded.projection.basis, projection.basis)
    assert float(loaded.projection.token_norm) == pytest.approx(float(projection.token_norm))


@pytest.mark.parametrize("depth", ["input", "layers"])
def test_a_behaviour_basis_exports_at_either_depth(tmp_path, depth):
    cfg = PrefixConfig(kind="behaviours", action_dim=4, tokens=2, sharpness=30.0, depth=depth)
    basis = torch.randn(4, *((3,) if depth == "layers" else ()), 2, 16)
    projection = UpProjection(cfg, 16, 1.0, basis)
    DATPolicy.from_trained(trained_algo(True), projection, base_model="m").save_pretrained(tmp_path)
    loaded = DATPolicy.from_pretrained(tmp_path)
    assert torch.equal(loaded.projection.basis, projection.basis) and loaded.projection.cfg.depth == depth
    states = torch.randn(3, 16)
    assert loaded(states).shape == (3, *basis.shape[1:])


def test_the_model_card_names_a_loadable_base_model_and_the_evaluation(tmp_path):
    from dat.rl.export import model_card

    projection = UpProjection.pca(torch.randn(50, 16), PrefixConfig(action_dim=4))
    policy = DATPolicy.from_trained(trained_algo(True), projection, base_model="smollm2-135m-instruct")
    card = model_card(policy, {"judge": "embedding"}, "| condition | reward |\n| policy | 0.5 [0.4, 0.6] |")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card and "arxiv.org/abs/2406.11978" in card
    assert "- judge: embedding" in card and "| policy | 0.5 [0.4, 0.6] |" in card
    local = model_card(DATPolicy.from_trained(trained_algo(True), projection, base_model="/models/mine"), {})
    assert "base_model:" not in local and "Not evaluated." in local  # a local folder is no Hub reference


def test_the_do_not_steer_point_and_the_state_settings_survive_the_export(tmp_path):
    """A null logit (prefix.null_action) is one more action entry: the export keeps it, and the rows whose null logit
    is the largest get no prefix from ``prefixes``, as the unsteered model; the state layer and pooling travel."""
    cfg = PrefixConfig(kind="behaviours", action_dim=3, tokens=2, sharpness=30.0, null_action=True)
    projection = UpProjection(cfg, 16, 1.0, torch.randn(3, 2, 16))
    algo = trained_algo(True)  # a 4-d action: three behaviours and the null logit
    DATPolicy.from_trained(algo, projection, base_model="m", state_layer=2, state_pool="mean").save_pretrained(tmp_path)
    loaded = DATPolicy.from_pretrained(tmp_path)
    assert loaded.projection.cfg.null_action and loaded.projection.cfg.planner_dim == 4
    assert (loaded.state_layer, loaded.state_pool) == (2, "mean")
    states = torch.from_numpy(np.random.default_rng(3).normal(3.0, 2.0, (64, 16)).astype(np.float32))
    actions = loaded.act(states)
    null = actions.argmax(-1) == 3
    made = loaded.prefixes(states)
    assert [p is None for p in made] == null.tolist()
    steered = [i for i, p in enumerate(made) if p is not None]
    assert steered and torch.allclose(torch.stack([made[i] for i in steered]), loaded(states)[steered])
