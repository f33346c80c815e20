"""The SQLite judgement cache: hits on re-run, no caching of failures, crash safety, concurrent readers."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from dat.judges.cache import CachedJudge, JudgeCache, cache_key, record_hash
from dat.judges.judgement import AgentScores, Judgement
from dat.judges.rule import RuleJudge
from dat.records import DialogueRecord, Utterance

ROOT = Path(__file__).resolve().parents[1]


def make_record(i: int, checks=({"kind": "keyword", "pattern": "deal"},)) -> DialogueRecord:
    return DialogueRecord(f"t{i}", f"Scenario {i}", ("Ann", "Bob"), ("", ""), ("g0", "g1"),
                          (Utterance(0, "deal" if i % 2 else "no"),), steered=0, checks=tuple(checks))


def ok(goal: float) -> Judgement:
    scores = (AgentScores(goal=goal), AgentScores())
    return Judgement(scores=scores, backend="rule", model="rules", version="v")


def test_rerun_is_served_from_the_cache(tmp_path):
    records = [make_record(i) for i in range(4)]
    judge = CachedJudge(RuleJudge(), tmp_path / "c.sqlite")
    first = judge(records)
    again = CachedJudge(RuleJudge(), tmp_path / "c.sqlite")  # a new process would see the same file
    second = again(records)
    assert [j.scores for j in first] == [j.scores for j in second] == [
        (AgentScores(goal=g), AgentScores()) for g in (0.0, 10.0, 0.0, 10.0)]
    assert all(j.usage.cached for j in second) and not any(j.usage.cached for j in first)
    assert again.metrics()["judge/calls"] == 0 and again.metrics()["judge/cache_hits"] == 4
    assert judge.metrics()["judge/calls"] == 4 and judge.metrics()["judge/cache_hits"] == 0


def test_key_is_the_exact_dialogue_and_the_judge_version(tmp_path):
    a = make_record(1)
    assert record_hash(a) == record_hash(replace(a, task_id="other"))   # a label, not content
    assert record_hash(a) != record_hash(replace(a, steered=1))
    assert record_hash(a) != record_hash(replace(a, turns=(Utterance(0, "deal!"),)))
    judge = CachedJudge(RuleJudge(), tmp_path / "c.sqlite")
    judge([a])
    other = CachedJudge(RuleJudge(sentiment_threshold=0.5), tmp_path / "c.sqlite")  # other settings
    other([a])
    assert other.metrics()["judge/cache_hits"] == 0 and len(other.cache) == 2


def test_failed_judgements_are_judged_again(tmp_path):
    failing = make_record(3, checks=())
    judge = CachedJudge(RuleJudge(), tmp_path / "c.sqlite")
    assert judge([failing])[0].status == "failed"
    assert judge([failing])[0].status == "failed"
    assert judge.metrics()["judge/calls"] == 2 and judge.metrics()["judge/cache_hits"] == 0
    assert len(judge.cache) == 0


def test_duplicates_in_one_batch_are_judged_once(tmp_path):
    judge = CachedJudge(RuleJudge(), tmp_path / "c.sqlite")
    out = judge([make_record(1), make_record(1), make_record(2)])
    assert [j.scores[0].goal for j in out] == [10.0, 10.0, 0.0] and judge.metrics()["judge/calls"] == 2


def test_exception_inside_a_transaction_leaves_prior_rows(tmp_path):
    cache = JudgeCache(tmp_path / "c.sqlite")
    cache.put_many([("k1", "h1", ok(1.0))])
    with pytest.raises(RuntimeError):
        with cache.transaction() as conn:
            conn.execute("DELETE FROM judgements")
            conn.execute("INSERT INTO judgements VALUES ('k2', 'b', 'm', 'v', 'h', '{}', 0)")
            raise RuntimeError("crash mid-write")
    assert len(cache) == 1 and cache.get_many(["k1", "k2"])["k1"].scores[0].goal == 1.0


def test_killed_writer_leaves_the_file_consistent(tmp_path):
    path = tmp_path / "c.sqlite"
    JudgeCache(path).put_many([(cache_key("rule", "rules", "v", "h1"), "h1", ok(4.0))])
    script = textwrap.dedent(f"""
        import os
        from dat.judges.cache import JudgeCache
        cache = JudgeCache({str(path)!r})
        with cache.transaction() as conn:
            conn.executemany("INSERT INTO judgements VALUES (?, 'b', 'm', 'v', 'h', '{{}}', 0)",
                             [(f"x{{i}}",) for i in range(1000)])
            os._exit(9)  # the process dies before COMMIT
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    cache = JudgeCache(path)
    assert len(cache) == 1 and sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_readers_are_not_blocked_by_an_open_write(tmp_path):
    path = tmp_path / "c.sqlite"
    writer = JudgeCache(path)
    writer.put_many([("k1", "h1", ok(2.0))])
    reader = JudgeCache(path, timeout_s=0.5)
    with writer.transaction() as conn:
        conn.execute("INSERT INTO judgements VALUES ('k2', 'b', 'm', 'v', 'h', '{}', 0)")
        assert set(reader.get_many(["k1", "k2"])) == {"k1"}  # WAL: readers see the last commit
    assert set(reader.get_many(["k1", "k2"])) == {"k1", "k2"}
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone() == ("wal",)
