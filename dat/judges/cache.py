"""A persistent judgement cache (SQLite, WAL) and the wrapper that puts it in front of any judge.

Judging is the expensive, non-repeatable part of a run; caching by (backend, model, version, exact
dialogue) makes a re-run of the same episodes free and its rewards identical. Each batch is written in
one transaction, so a crash leaves the file as it was before that batch; WAL lets other processes read
while one writes. Failed judgements are never stored: they are judged again next time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from dat.judges.base import Judge
from dat.judges.judgement import Judgement, Usage
from dat.records import DialogueRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS judgements (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    record_hash TEXT NOT NULL,
    judgement TEXT NOT NULL,
    created REAL NOT NULL
)
"""


def record_hash(record: DialogueRecord) -> str:
    """Hash of everything in a record a judge can see (the task id is only a label: left out)."""
    data = record.to_dict()
    data.pop("task_id", None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def cache_key(backend: str, model: str, version: str, rhash: str) -> str:
    """The row key: which judge (backend, model, version) scored which exact dialogue (its record hash)."""
    return hashlib.sha256("\0".join((backend, model, version, rhash)).encode()).hexdigest()


class JudgeCache:
    """SQLite file of successful judgements; safe to share between threads and processes.

    >>> import tempfile, pathlib
    >>> cache = JudgeCache(pathlib.Path(tempfile.mkdtemp()) / "judge.sqlite")
    >>> len(cache)
    0
    """

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None,
                                     check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside are committed together, or (on any exception) not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get_many(self, keys: Sequence[str]) -> dict[str, Judgement]:
        found: dict[str, Judgement] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT key, judgement FROM judgements WHERE key IN ({marks})", chunk).fetchall()
                for key, text in rows:
                    found[key] = Judgement.from_dict(json.loads(text))
        return found

    def put_many(self, items: Sequence[tuple[str, str, Judgement]]) -> int:
        """Store ``(key, record_hash, judgement)`` rows in one transaction; failed judgements are skipped."""
        now = time.time()
        rows = [(key, j.backend, j.model, j.version, rh, json.dumps(j.to_dict(), ensure_ascii=False), now)
                for key, rh, j in items if j.ok]
        if rows:
            with self.transaction() as conn:
                conn.executemany("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class CachedJudge:
    """Serve judgements from a :class:`JudgeCache`; ask the wrapped judge only for the misses.

    >>> import tempfile, pathlib
    >>> from dat.judges.rule import RuleJudge
    >>> judge = CachedJudge(RuleJudge(), pathlib.Path(tempfile.mkdtemp()) / "judge.sqlite")
    >>> judge.name, judge.metrics()["judge/cache_hits"]
    ('rule', 0.0)
    """

    def __init__(self, judge: Judge, cache: JudgeCache | str | Path) -> None:
        self.judge = judge
        self.cache = cache if isinstance(cache, JudgeCache) else JudgeCache(cache)
        self.name, self.model, self.version = judge.name, judge.model, judge.version
        self._hits = 0
        self._lock = threading.Lock()

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]:
        hashes = [record_hash(r) for r in records]
        keys = [cache_key(self.name, self.model, self.version, h) for h in hashes]
        found = self.cache.get_many(keys)
        out: list[Judgement | None] = [
            found[k].with_usage(**vars(Usage(cached=True))) if k in found else None for k in keys]
        with self._lock:
            self._hits += sum(j is not None for j in out)
        missing = [i for i, j in enumerate(out) if j is None]
        # Duplicates within one batch are judged once.
        unique: dict[str, int] = {}
        for i in missing:
            unique.setdefault(keys[i], i)
        if unique:
            fresh = self.judge([records[i] for i in unique.values()])
            by_key = dict(zip(unique, fresh, strict=True))
            self.cache.put_many([(k, hashes[unique[k]], j) for k, j in by_key.items()])
            for i in missing:
                out[i] = by_key[keys[i]]
        return [j for j in out if j is not None]

    def metrics(self) -> dict[str, float]:
        metrics = dict(self.judge.metrics())
        with self._lock:
            metrics["judge/cache_hits"] = float(self._hits)
        return metrics
