"""Datasets: written then read back they are the episodes played; a killed collection resumes without
duplicates; shards merge into one dataset with disjoint seeds, and a merge of unlike shards is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dat.dialogue.collection import fill, missing
from dat.dialogue.dataset import CARD, DATA, Dataset, DatasetError, merge, read_episodes, shard_folder
from dat.dialogue.rollout import collect
from dat.dialogue.rules import EnvConfig
from envs.vector_env import collector_envs
from tests.dialogue_tasks import GREEDY, NEVER, LengthJudge, make_tasks

CFG = EnvConfig(max_turns=2, sampling=GREEDY, leave_phrase=NEVER)
SETTINGS = {"model": "tiny", "action_space": "abc", "state": {"layer": -1, "pool": "mean"}}


def envs_for(lm, proj, judge=None, width=4):
    return collector_envs(lm, proj, make_tasks(), judge or LengthJudge(), CFG, episodes=width, batch_size=width)


def new(folder, envs, shard=0, shards=1, settings=SETTINGS) -> Dataset:
    card = {"settings": settings, "seed": 7, "shard": shard, "shards": shards}
    return Dataset.create(folder, card, envs.single_observation_space, envs.single_action_space)


def same(a, b) -> None:
    for name in ("states", "actions", "rewards", "next_states", "dones", "truncated"):
        assert np.allclose(getattr(a, name), getattr(b, name), atol=1e-5), name
    assert (a.record.to_dict(), a.seed, a.task_id, a.steered, a.reward) == (b.record.to_dict(), b.seed, b.task_id,
                                                                             b.steered, b.reward)


def test_a_dataset_read_back_equals_the_episodes_played(lm, proj, tmp_path):
    envs = envs_for(lm, proj)
    data = new(tmp_path / "d", envs)
    assert fill(data, envs, "random", 6, batch=4) == 6 and len(data) == 6
    played = collect(envs, "random", 6, 7, indices=list(range(6)))
    back = read_episodes(tmp_path / "d")
    assert [e.seed for e in back] == [e.seed for e in played]
    for a, b in zip(back, played, strict=True):
        same(a, b)
    import minari

    standard = minari.MinariDataset(tmp_path / "d" / DATA)  # what other offline-RL libraries read
    assert standard.total_episodes == 6 and standard.observation_space == envs.single_observation_space
    first = next(standard.iterate_episodes([0]))
    assert np.allclose(first.observations[:-1], played[0].states, atol=1e-5) and first.terminations[-1]
    card = json.loads((tmp_path / "d" / CARD).read_text())
    assert card["episodes"] == 6 and card["settings"] == SETTINGS and card["failed_judgements"] == 0
    states, actions, rewards, next_states, dones, _, lengths = Dataset(tmp_path / "d").transitions()
    assert len(states) == sum(len(e) for e in played) and lengths.tolist() == [len(e) for e in played]
    assert np.allclose(rewards, np.concatenate([e.rewards for e in played]))


class PickyJudge(LengthJudge):
    """Fails every dialogue of one steered side (a judge that cannot parse some answers)."""

    def __call__(self, records):
        return [None if r.steered == 1 else v for r, v in zip(records, super().__call__(records), strict=True)]


def test_failed_judgements_stay_in_the_transcripts_and_out_of_the_data(lm, proj, tmp_path):
    envs = envs_for(lm, proj, judge=PickyJudge())
    data = new(tmp_path / "d", envs)
    fill(data, envs, "random", 8, batch=8)
    played = collect(envs, "random", 8, 7, indices=list(range(8)), keep_failed=True)
    failed = [e.judgement_failed for e in played]
    assert any(failed) and not all(failed)
    assert [r.failed for r in Dataset(tmp_path / "d").rows] == failed
    assert data.minari().total_episodes == failed.count(False) and data.card["failed_judgements"] == sum(failed)
    back = read_episodes(tmp_path / "d")
    assert [e.record.to_dict() for e in back] == [e.record.to_dict() for e in played]
    for a, b in zip(back, played, strict=True):
        if not b.judgement_failed:
            same(a, b)


class GoesDown(LengthJudge):
    """Judges its first ``calls_up`` calls, then fails every dialogue (a judge that goes down mid-collection)."""

    def __init__(self, calls_up: int):
        super().__init__()
        self.calls_up = calls_up

    def __call__(self, records):
        judged = super().__call__(records)
        return judged if len(self.calls) <= self.calls_up else [None] * len(records)


def test_an_outage_commits_the_judged_episodes_of_its_batch_and_a_rerun_plays_the_rest(lm, proj, tmp_path):
    from dat.dialogue.scoring import JudgeOutage, OutageWatch

    envs = envs_for(lm, proj, judge=GoesDown(calls_up=1))
    data = new(tmp_path / "d", envs)
    with pytest.raises(JudgeOutage, match="failed 4 judgements in a row"):
        fill(data, envs, "random", 8, batch=8, watch=OutageWatch(4))
    kept = Dataset(tmp_path / "d")
    assert len(kept) == 4 and not any(r.failed for r in kept.rows)  # the judged half, no failed row
    healthy = envs_for(lm, proj)
    assert fill(kept, healthy, "random", 8, batch=8) == 4  # only the episodes the outage left
    played = collect(healthy, "random", 8, 7, indices=list(range(8)), keep_failed=True)
    final = Dataset(tmp_path / "d")
    back = dict(zip([r.index for r in final.rows], read_episodes(tmp_path / "d"), strict=True))
    assert sorted(back) == list(range(8)) and not any(r.failed for r in final.rows)
    for i, episode in enumerate(played):
        same(back[i], episode)


def test_a_killed_collection_resumes_without_duplicates(lm, proj, tmp_path, monkeypatch):
    envs = envs_for(lm, proj)
    data = new(tmp_path / "d", envs)
    fill(data, envs, "random", 4, batch=4)
    import dat.dialogue.dataset as module

    def killed(path, text):  # the kill comes after the Minari episodes, before the transcripts commit them
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        fill(data, envs, "random", 8, batch=4)
    monkeypatch.undo()
    assert data._storage.total_episodes == 8  # the uncommitted batch is on disk...
    reopened = Dataset(tmp_path / "d")
    assert len(reopened) == 4 and reopened._storage.total_episodes == 4  # ...and dropped when reopened
    assert missing(reopened, 8) == [4, 5, 6, 7]
    assert fill(reopened, envs, "random", 8, batch=4) == 4 and fill(reopened, envs, "random", 8, batch=4) == 0
    resumed = read_episodes(tmp_path / "d")
    assert [e.seed for e in resumed] == [e.seed for e in collect(envs, "random", 8, 7, indices=list(range(8)))]
    assert Dataset(tmp_path / "d").minari().total_episodes == 8


def test_shards_merge_into_the_dataset_one_collection_gives(lm, proj, tmp_path):
    envs = envs_for(lm, proj)
    for shard in (0, 1):
        fill(new(shard_folder(tmp_path / "d", shard, 2), envs, shard, 2), envs, "random", 6, batch=4)
    with pytest.raises(DatasetError, match="merge them first"):
        Dataset(tmp_path / "d")
    merged = merge(tmp_path / "d")
    assert merged.indices == list(range(6)) and merged.card["sharded"] == 2
    single = new(tmp_path / "one", envs)
    fill(single, envs, "random", 6, batch=4)
    for a, b in zip(read_episodes(tmp_path / "d"), read_episodes(tmp_path / "one"), strict=True):
        same(a, b)


def test_unlike_or_incomplete_shards_are_refused(lm, proj, tmp_path):
    envs = envs_for(lm, proj)
    fill(new(shard_folder(tmp_path / "d", 0, 2), envs, 0, 2), envs, "random", 4, batch=4)
    with pytest.raises(DatasetError, match=r"shards found are \[0\] of collect.shards=2"):
        merge(tmp_path / "d")
    other = {**SETTINGS, "model": "another"}
    fill(new(shard_folder(tmp_path / "d", 1, 2), envs, 1, 2, settings=other), envs, "random", 4, batch=4)
    with pytest.raises(DatasetError, match="other settings.*settings.model"):
        merge(tmp_path / "d")
    assert not (tmp_path / "d" / CARD).exists()
    with pytest.raises(DatasetError, match="other settings.*settings.model"):  # nor is a resume mixing them
        new(shard_folder(tmp_path / "d", 1, 2), envs, 1, 2)
