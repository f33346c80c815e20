"""dat.rl.buffer: episodes into an SB3 ReplayBuffer, crash-safe npz persistence, normaliser stats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from dat.rl import buffer as buf
from dat.rl.buffer import add_episode, load_buffer, save_buffer, state_stats

OBS_DIM, ACT_DIM = 4, 2


def make_buffer(size: int = 32) -> ReplayBuffer:
    return ReplayBuffer(
        size,
        spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32),
        spaces.Box(-1, 1, (ACT_DIM,), np.float32),
        device="cpu",
    )


def episode(steps: int, start: float = 0.0) -> tuple[np.ndarray, ...]:
    """Transitions numbered start, start+1, ... so order and identity are easy to check."""
    ids = start + np.arange(steps, dtype=np.float32)
    obs = np.repeat(ids[:, None], OBS_DIM, axis=1)
    actions = np.tile(np.array([0.5, -0.5], np.float32), (steps, 1))
    return obs, obs + 0.5, actions, ids * 10


def test_add_episode_marks_only_the_last_transition_terminal() -> None:
    rb = make_buffer()
    assert add_episode(rb, *episode(3), terminated=True) == 3
    assert add_episode(rb, *episode(2, start=3), terminated=False) == 2
    assert rb.size() == 5 and rb.pos == 5 and not rb.full
    np.testing.assert_array_equal(rb.dones[:5, 0], [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(rb.timeouts[:5, 0], 0)
    np.testing.assert_array_equal(rb.rewards[:5, 0], [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(rb.next_observations[2, 0], [2.5] * OBS_DIM)
    samples = rb._get_samples(np.arange(5))
    assert samples.dones.flatten().tolist() == [0, 0, 1, 0, 0]


def test_add_episode_wraps_around_a_full_buffer() -> None:
    rb = make_buffer(size=4)
    add_episode(rb, *episode(3))
    add_episode(rb, *episode(3, start=3))
    assert rb.full and rb.pos == 2 and rb.size() == 4
    # slots 0,1 hold transitions 4,5; slots 2,3 hold 2,3
    np.testing.assert_array_equal(rb.observations[:, 0, 0], [4, 5, 2, 3])
    np.testing.assert_array_equal(rb.dones[:, 0], [0, 1, 1, 0])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: (e[0], e[1], e[2] * 3, e[3]), "must lie in \\[-1, 1\\]"),
        (lambda e: (e[0][:2], e[1], e[2], e[3]), "observations has shape \\(2, 4\\)"),
        (lambda e: (e[0], e[1][:, :3], e[2], e[3]), "next_observations"),
        (lambda e: (e[0], e[1], e[2], np.array([0, np.nan, 0])), "rewards contains NaN"),
        (lambda e: (e[0][:0], e[1][:0], e[2][:0], e[3][:0]), "no transitions"),
    ],
)
def test_add_episode_rejects_bad_input(change, message: str) -> None:
    rb = make_buffer()
    with pytest.raises(ValueError, match=message):
        add_episode(rb, *change(episode(3)))
    assert rb.size() == 0


def test_save_load_round_trip_is_exact_and_chronological(tmp_path) -> None:
    rb = make_buffer(size=5)
    add_episode(rb, *episode(4))
    add_episode(rb, *episode(3, start=4))  # wraps: holds transitions 2..6
    path = save_buffer(rb, tmp_path / "sub" / "buffer.npz")
    restored = make_buffer(size=10)
    assert load_buffer(path, restored) == 5
    assert restored.pos == 5 and not restored.full
    np.testing.assert_array_equal(restored.observations[:5, 0, 0], [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(restored.rewards[:5, 0], [20, 30, 40, 50, 60])
    np.testing.assert_array_equal(restored.dones[:5, 0], [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(restored.actions[:5, 0], np.tile([0.5, -0.5], (5, 1)))
    # a smaller buffer keeps the most recent transitions
    small = make_buffer(size=3)
    assert load_buffer(path, small) == 3
    assert small.full and small.pos == 0
    np.testing.assert_array_equal(small.observations[:, 0, 0], [4, 5, 6])


def test_file_is_npz_without_pickle_and_has_a_json_header(tmp_path) -> None:
    rb = make_buffer()
    add_episode(rb, *episode(3))
    path = save_buffer(rb, tmp_path / "b.npz")
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        assert data["observations"].dtype == np.float32
    assert meta == {
        "format": "dat-replay-buffer",
        "version": 1,
        "transitions": 3,
        "obs_shape": [OBS_DIM],
        "action_dim": ACT_DIM,
    }


def test_interrupted_save_leaves_the_previous_file_intact(tmp_path, monkeypatch) -> None:
    rb = make_buffer()
    add_episode(rb, *episode(3))
    path = save_buffer(rb, tmp_path / "b.npz")
    before = path.read_bytes()
    add_episode(rb, *episode(3, start=3))

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(buf.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_buffer(rb, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["b.npz"]  # no temporary file left behind


def test_truncated_file_is_refused_and_the_buffer_untouched(tmp_path) -> None:
    rb = make_buffer()
    add_episode(rb, *episode(6))
    path = save_buffer(rb, tmp_path / "b.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    target = make_buffer()
    add_episode(target, *episode(2, start=100))
    with pytest.raises(ValueError, match="b.npz: not a complete replay-buffer file.*truncated"):
        load_buffer(path, target)
    assert target.size() == 2 and target.observations[0, 0, 0] == 100


def test_load_rejects_other_sizes_and_formats(tmp_path) -> None:
    rb = make_buffer()
    add_episode(rb, *episode(2))
    path = save_buffer(rb, tmp_path / "b.npz")
    other = ReplayBuffer(
        8, spaces.Box(-1, 1, (OBS_DIM + 1,), np.float32), spaces.Box(-1, 1, (ACT_DIM,)), device="cpu"
    )
    with pytest.raises(ValueError, match="holds states \\(4,\\).*expects \\(5,\\)"):
        load_buffer(path, other)
    np.savez(tmp_path / "x.npz", meta=np.array(json.dumps({"format": "other", "version": 1})))
    with pytest.raises(ValueError, match="x.npz"):
        load_buffer(tmp_path / "x.npz", make_buffer())


def test_state_stats_are_the_population_mean_and_std() -> None:
    rb = make_buffer(size=8)
    rng = np.random.default_rng(0)
    states = rng.normal([1, -2, 3, 0], [0.5, 2, 1, 0], size=(6, OBS_DIM)).astype(np.float32)
    add_episode(rb, states, states, np.zeros((6, ACT_DIM)), np.zeros(6))
    mean, std = state_stats(rb)
    np.testing.assert_allclose(mean, states.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, states.std(0), rtol=1e-5)
    assert std[3] == 0 and mean.dtype == np.float32
    with pytest.raises(ValueError, match="empty"):
        state_stats(make_buffer())
