"""Episode files: a save/load round trip keeps every field, batches append, incomplete batches are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dat.dialogue.episodes import Episode, load_episodes, save_episodes
from dat.records import Utterance
from tests.dialogue_tasks import make_tasks


def episode(k: int, length: int = 3, steered: int = 0, reward: float | None = 0.5) -> Episode:
    rng = np.random.default_rng(k)
    task = make_tasks(2)[k % 2]
    turns = [Utterance(i % 2, f"line {i} of {k}") for i in range(2 * length)]
    dones = np.zeros(length, bool)
    dones[-1] = True
    return Episode(
        record=task.record(turns, steered), states=rng.normal(size=(length, 8)).astype(np.float32),
        actions=rng.uniform(-1, 1, (length, 4)).astype(np.float32),
        rewards=np.r_[np.zeros(length - 1), reward or 0.0].astype(np.float32),
        next_states=rng.normal(size=(length, 8)).astype(np.float32), dones=dones,
        truncated=np.zeros(length, bool), judgement={"status": "ok", "scores": [{"goal": 5.0}, {}]},
        reward=reward, task_id=task.id, steered=steered, seed=100 + k, partner_opens=bool(k % 2),
        judgement_failed=reward is None, left_by=1 if k == 2 else None, policy="random",
        metadata={"round": 0},
    )


def assert_same(a: Episode, b: Episode) -> None:
    for name in ("states", "actions", "rewards", "next_states", "dones", "truncated"):
        got, want = getattr(a, name), getattr(b, name)
        assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=got.dtype.kind == "f"), name
    for name in ("record", "judgement", "reward", "task_id", "steered", "seed", "partner_opens",
                 "judgement_failed", "left_by", "policy", "metadata"):
        assert getattr(a, name) == getattr(b, name), name


def test_round_trip_and_append(tmp_path):
    first = [episode(0), episode(1, length=1, steered=1), episode(2, reward=None)]
    first[1].actions[:] = np.nan  # an unsteered episode
    second = [episode(3, length=2)]
    save_episodes(tmp_path, first)
    save_episodes(tmp_path, second)
    assert save_episodes(tmp_path, []) is None
    loaded = load_episodes(tmp_path)
    assert len(loaded) == 4
    for a, b in zip(loaded, first + second, strict=True):
        assert_same(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batch-00000.jsonl", "batch-00000.npz", "batch-00001.jsonl", "batch-00001.npz"]


def test_jsonl_lines_are_readable_on_their_own(tmp_path):
    path = save_episodes(tmp_path, [episode(0), episode(1)])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows[1]["record"]["turns"][0] == {"agent": 0, "text": "line 0 of 1"}
    assert rows[0]["judgement"]["scores"][0] == {"goal": 5.0} and rows[0]["reward"] == 0.5
    assert [r["offset"] for r in rows] == [0, 3] and rows[1]["seed"] == 101 and rows[0]["terminated"]
    with np.load(path.with_suffix(".npz")) as data:
        assert data["states"].shape == (6, 8) and data["lengths"].tolist() == [3, 3]


def test_incomplete_batches_are_refused_and_leftovers_ignored(tmp_path):
    save_episodes(tmp_path, [episode(0)])
    (tmp_path / "batch-00007.jsonl.tmp").write_text("garbage")  # a writer that crashed mid-way
    (tmp_path / "batch-00003.claim").touch()
    assert len(load_episodes(tmp_path)) == 1
    assert save_episodes(tmp_path, [episode(1)]).name == "batch-00008.jsonl"
    (tmp_path / "batch-00000.npz").unlink()
    with pytest.raises(FileNotFoundError, match="batch-00000.npz"):
        load_episodes(tmp_path)
    with pytest.raises(FileNotFoundError, match="save_episodes"):
        load_episodes(tmp_path / "missing")


def test_bad_line_names_file_and_line(tmp_path):
    path = save_episodes(tmp_path, [episode(0), episode(1)])
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + json.dumps({"record": {}}) + "\n")
    with pytest.raises(ValueError, match=r"batch-00000\.jsonl:2"):
        load_episodes(tmp_path)
