"""dat.rl.td3bc: the TD3+BC update on SB3's TD3, its normaliser, config and offline entry point."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from omegaconf import OmegaConf
from stable_baselines3 import TD3
from stable_baselines3.common.logger import configure
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from dat.rl.buffer import add_episode, state_stats
from dat.rl.normalizer import StateNormalizer
from dat.rl.td3bc import (
    TD3BC,
    AlgoConfig,
    NetArch,
    OfflineEnv,
    td3bc_actor_loss,
)

th.set_num_threads(1)
OBS = spaces.Box(-np.inf, np.inf, (4,), np.float32)
ACT = spaces.Box(-1, 1, (2,), np.float32)
SMALL = NetArch(actor=[16, 16], critic=[16, 16])


def small_model(**overrides) -> TD3BC:
    cfg = AlgoConfig(**{"net_arch": SMALL, "batch_size": 32, "buffer_size": 512, **overrides})
    return TD3BC.from_config(cfg, observation_space=OBS, action_space=ACT, seed=0)


def fill(buffer, episodes: int = 16, steps: int = 6, seed: int = 0, action=None) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(episodes):
        obs = rng.normal(2.0, 3.0, (steps + 1, 4))
        act = rng.uniform(-1, 1, (steps, 2)) if action is None else np.tile(action, (steps, 1))
        add_episode(buffer, obs[:-1], obs[1:], act, rng.normal(size=steps))


def test_alpha_zero_reproduces_sb3_td3_exactly() -> None:
    """Same seed, same data, same random draws: every weight matches SB3's TD3 after training."""
    env = OfflineEnv(OBS, ACT)
    common = dict(
        learning_rate=1e-3,
        batch_size=32,
        buffer_size=512,
        learning_starts=0,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [16, 16]},
    )
    ours = TD3BC("MlpPolicy", env, alpha=0.0, normalize_states=False, **common)
    ref = TD3("MlpPolicy", env, **common)
    for model in (ours, ref):
        fill(model.replay_buffer)
        model.set_logger(configure(None, []))
    th.manual_seed(1), np.random.seed(1)
    metrics = ours.learn_offline(7)
    th.manual_seed(1), np.random.seed(1)
    ref.train(7, batch_size=32)
    for (name, a), (_, b) in zip(
        ours.policy.state_dict().items(), ref.policy.state_dict().items(), strict=True
    ):
        assert th.equal(a, b), name
    assert metrics["train/actor_loss"] == pytest.approx(ref.logger.name_to_value["train/actor_loss"], abs=0)
    assert metrics["train/critic_loss"] == pytest.approx(ref.logger.name_to_value["train/critic_loss"], abs=0)
    assert metrics["train/lambda"] == 1.0


def test_actor_loss_formula_and_lambda_has_no_gradient() -> None:
    q = th.tensor([[1.0], [3.0], [-2.0], [6.0]], requires_grad=True)
    pi = th.tensor([[0.5], [0.0], [-0.5], [1.0]], requires_grad=True)
    a = th.tensor([[0.0], [0.0], [0.5], [1.0]])
    loss, info = td3bc_actor_loss(q, pi, a, alpha=2.5)
    lam = 2.5 / 3.0  # mean |q| = 12 / 4
    assert info["lambda"] == pytest.approx(lam)
    assert info["bc_loss"] == pytest.approx((0.25 + 0 + 1 + 0) / 4)
    assert loss.item() == pytest.approx(-lam * 2.0 + 0.3125)
    loss.backward()
    # λ is a constant: d loss / d q_i = -λ / N (a gradient through mean|q| would add α·sign(q_i)·mean(q)/…)
    assert th.allclose(q.grad, th.full_like(q, -lam / 4))
    assert th.allclose(pi.grad, 2 * (pi - a).detach() / 4)
    # α = 0: SB3-TD3's loss, no BC term and no gradient to the BC target
    q0 = q.detach().requires_grad_()
    loss0, info0 = td3bc_actor_loss(q0, pi.detach(), a, alpha=0.0)
    assert loss0.item() == pytest.approx(-2.0) and info0["lambda"] == 1.0


def test_bc_term_pulls_the_policy_toward_buffer_actions() -> None:
    """Constant dataset action, action-independent reward: BC weight orders the distance to it."""
    target = np.array([0.7, -0.4], np.float32)
    probe = np.random.default_rng(9).normal(2.0, 3.0, (200, 4)).astype(np.float32)
    distance = {}
    for alpha in (0.1, 2.5, 0.0):
        model = small_model(alpha=alpha, batch_size=64, actor_lr=3e-3, critic_lr=3e-3, gamma=0.0)
        fill(model.replay_buffer, episodes=64, steps=8, action=target)
        model.fit_normalizer()
        start = np.abs(model.predict(probe, deterministic=True)[0] - target).mean()
        model.learn_offline(200)
        distance[alpha] = np.abs(model.predict(probe, deterministic=True)[0] - target).mean()
    assert start > 0.6
    assert distance[0.1] < 0.1
    assert distance[0.1] < distance[2.5] < distance[0.0]
    assert distance[0.0] > 0.3


def test_terminal_transitions_do_not_bootstrap() -> None:
    model = small_model(gamma=0.9)
    fill(model.replay_buffer, episodes=2, steps=3)
    model.fit_normalizer()
    samples = model.replay_buffer._get_samples(np.arange(6))
    assert samples.dones.flatten().tolist() == [0, 0, 1, 0, 0, 1]
    target = model.target_q(samples)
    terminal = samples.dones.flatten() == 1
    assert th.equal(target[terminal], samples.rewards[terminal])
    assert not th.allclose(target[~terminal], samples.rewards[~terminal])
    # truncated (done = 0) rows get r + γ·min Q'; the same rows marked done get r exactly
    flipped = ReplayBufferSamples(
        samples.observations,
        samples.actions,
        samples.next_observations,
        th.ones_like(samples.dones),
        samples.rewards,
    )
    assert th.equal(model.target_q(flipped), samples.rewards)


def test_normaliser_is_fitted_applied_and_survives_save_load(tmp_path) -> None:
    model = small_model()
    fill(model.replay_buffer)
    model.fit_normalizer()
    mean, std = state_stats(model.replay_buffer)
    norms = model.normalizers
    assert len(norms) == 4  # actor, critic and both targets
    for norm in norms:
        assert th.equal(norm.mean, th.as_tensor(mean)) and th.equal(norm.std, th.as_tensor(std))
    states = th.as_tensor(model.replay_buffer.observations[: model.replay_buffer.size(), 0])
    features = model.actor.features_extractor(states)
    assert th.allclose(features.mean(0), th.zeros(4), atol=1e-5)
    assert th.allclose(features.std(0, unbiased=False), th.ones(4), atol=2e-3)  # std / (std + 1e-3)
    model.learn_offline(10)

    model.save(tmp_path / "model.zip")
    loaded = TD3BC.load(tmp_path / "model.zip", device="cpu")
    assert loaded.alpha == 2.5 and loaded.actor_lr == 3e-4
    for norm in loaded.normalizers:
        assert isinstance(norm, StateNormalizer) and norm.eps == 1e-3
        assert th.equal(norm.mean, th.as_tensor(mean)) and th.equal(norm.std, th.as_tensor(std))
    probe = np.random.default_rng(3).normal(2, 3, (5, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(probe, deterministic=True)[0], loaded.predict(probe, deterministic=True)[0]
    )


def test_set_normalizer_needs_a_normalising_model() -> None:
    with pytest.raises(ValueError, match="expected \\(4,\\)"):
        small_model().set_normalizer(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="normalize_states=False"):
        small_model(normalize_states=False).set_normalizer(np.zeros(4), np.ones(4))
    assert small_model(normalize_states=False).normalizers == []


def test_learn_offline_returns_and_logs_metrics(tmp_path) -> None:
    model = small_model(actor_lr=1e-5, critic_lr=2e-4)
    with pytest.raises(ValueError, match="replay buffer is empty"):
        model.learn_offline(1)
    fill(model.replay_buffer)
    model.fit_normalizer()
    model.set_logger(configure(str(tmp_path), ["csv"]))
    metrics = model.learn_offline(6)
    assert set(metrics) == {
        "train/n_updates",
        "train/critic_loss",
        "train/actor_loss",
        "train/q_mean",
        "train/lambda",
        "train/bc_loss",
    }
    assert metrics["train/n_updates"] == 6 and all(np.isfinite(v) for v in metrics.values())
    assert metrics["train/lambda"] == pytest.approx(2.5 / abs(metrics["train/q_mean"]), rel=0.5)
    assert model.actor.optimizer.param_groups[0]["lr"] == 1e-5
    assert model.critic.optimizer.param_groups[0]["lr"] == 2e-4
    model.logger.dump(0)
    row = next(csv.DictReader(open(tmp_path / "progress.csv")))
    assert float(row["train/bc_loss"]) == pytest.approx(metrics["train/bc_loss"])
    with pytest.raises(RuntimeError, match="learn_offline"):
        model.learn(10)


def test_config_validation_presets_and_structured_config() -> None:
    with pytest.raises(ValueError, match="algo.alpha=-1.*2.5 for TD3\\+BC"):
        AlgoConfig(alpha=-1)
    with pytest.raises(ValueError, match="algo.net_arch.critic"):
        AlgoConfig(net_arch=NetArch(critic=[]))
    with pytest.raises(ValueError, match="algo.activation"):
        AlgoConfig(activation="gelu")
    assert OmegaConf.to_object(OmegaConf.structured(AlgoConfig)) == AlgoConfig()
    model = small_model(activation="silu", net_arch=NetArch([8], [8, 4]))
    assert isinstance(model.actor.mu[1], th.nn.SiLU)
    assert [m.out_features for m in model.critic.qf0 if isinstance(m, th.nn.Linear)] == [8, 4, 1]


@pytest.mark.slow
def test_pendulum_td3bc_holds_behaviour_level_where_td3_collapses(tmp_path) -> None:
    """``python benchmarks/td3bc_pendulum.py --quick``: TD3+BC keeps a dataset's level where plain TD3 collapses."""
    out = tmp_path / "td3bc_pendulum.json"
    done = subprocess.run([sys.executable, "benchmarks/td3bc_pendulum.py", "--quick", "--no-throughput", "--out",
                           str(out)], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    checks = json.loads(out.read_text())["checks"]
    assert checks["td3bc_expert_reaches_behaviour"], checks
    assert checks["td3bc_medium_no_collapse"], checks
    assert checks["td3_collapses"], checks
