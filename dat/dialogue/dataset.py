"""Datasets of collected episodes in Minari's format, with their transcripts beside them, written resumably.

DAT's recipe collects thousands of random-action episodes once and trains fully offline. A dataset is a folder:

* ``data/``: the transitions as a Minari dataset (arrow storage; ``minari.MinariDataset(folder / "data")``
  reads it, as do the offline-RL libraries that read Minari, d3rlpy and CORL among them). Observation and
  action spaces are the env's; each episode's Minari metadata holds its ``index``, ``seed``, task and side.
  Episodes whose judgement failed are not in it (their reward is unusable) but stay in the transcripts.
* ``transcripts/batch-NNNNN.jsonl``: one line per episode, keyed by its ``index``: the dialogue the judge saw,
  the judgement, the reward, and the episode's Minari id (None when its judgement failed).
* ``card.json``: what the data means: the model, the action space's fingerprint, the state, the judge and
  reward, the scenarios, the decoding, the behaviour policy, the seed, the shard, and the episodes so far.

Episode ``index`` g is played with the seed ``derive_seed(seed, "episode", g)``; shard i of k plays the indices
g with g % k == i, so shards draw disjoint seeds and their merge is the dataset one process would collect.

A batch is committed when its transcript file is in place (written after its Minari episodes): a killed
collection loses at most the batch it was writing, and a reopened dataset drops the Minari episodes a
killed writer left uncommitted, so a re-run continues from the last committed episode, never twice.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

from dat.atomic import atomic_write
from dat.dialogue.episodes import Episode
from dat.records import DialogueRecord

CARD, DATA, TRANSCRIPTS, SHARDS = "card.json", "data", "transcripts", "shards"
FORMAT = "dat-dataset"
VERSION = 1


def fingerprint(projection) -> str:
    """A short hash of an up-projection's settings and tensors: two datasets whose actions mean the same
    prefixes have the same one."""
    settings = {k: v for k, v in vars(projection.cfg).items() if k != "path"}  # where it was loaded from is no setting
    digest = hashlib.sha256(json.dumps(_plain(settings), sort_keys=True).encode())
    for name, tensor in sorted(projection.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Row:
    """One committed episode as the transcripts hold it."""

    index: int
    seed: int
    minari_id: int | None
    line: dict[str, Any]

    @property
    def failed(self) -> bool:
        return self.minari_id is None


class DatasetError(ValueError):
    """A dataset folder that cannot be read, appended to or merged as asked; the message says how to fix it."""


class Dataset:
    """A dataset folder (module docstring), opened for reading and appending.

    >>> data = Dataset.create("outputs/datasets/mood", card, obs_space, act_space)   # doctest: +SKIP
    >>> data.append(episodes, indices)                                               # doctest: +SKIP
    >>> states, actions, rewards, next_states, dones = data.transitions()           # doctest: +SKIP
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).resolve()  # Minari's storage joins paths in ways a relative one does not survive
        if not (self.folder / CARD).is_file():
            shards = sorted((self.folder / SHARDS).glob("*/card.json")) if (self.folder / SHARDS).is_dir() else []
            hint = (f" It holds {len(shards)} shards: merge them first with `dat dataset merge {self.folder}`."
                    if shards else " Give a folder written by `dat collect`.")
            raise DatasetError(f"{self.folder} is no dataset ({CARD} missing).{hint}")
        self.card: dict[str, Any] = json.loads((self.folder / CARD).read_text())
        if self.card.get("format") != FORMAT:
            raise DatasetError(f"{self.folder / CARD} is not a {FORMAT} card (format={self.card.get('format')!r}).")
        self.rows: list[Row] = self._read_rows()
        self._storage = self._open_storage()
        self._drop_uncommitted()

    # ------------------------------------------------------------------------------ creating
    @classmethod
    def create(cls, folder: str | Path, card: dict[str, Any], observation_space: spaces.Box,
               action_space: spaces.Box) -> Dataset:
        """A new, empty dataset at ``folder`` (which must not hold one), or the existing one when its card's
        settings equal ``card``'s (a re-run resumes or grows it). ``card`` needs ``settings``, ``seed``,
        ``shard`` and ``shards``."""
        folder = Path(folder).resolve()
        if (folder / CARD).is_file():
            data = cls(folder)
            data.check_same(card)
            return data
        from minari.dataset.minari_storage import MinariStorage

        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / DATA, ignore_errors=True)  # a create killed before its card: start over
        import minari

        storage = MinariStorage.new(folder / DATA, observation_space=observation_space, action_space=action_space,
                                    data_format="arrow")
        storage.update_metadata({"dataset_id": f"dat/{_slug(folder.name)}-v0", "minari_version": minari.__version__,
                                 "algorithm_name": str(card.get("behaviour", "random")),
                                 "code_permalink": "https://arxiv.org/abs/2406.11978"})
        (folder / TRANSCRIPTS).mkdir(exist_ok=True)
        _write_json(folder / CARD, {"format": FORMAT, "version": VERSION, **card, "episodes": 0,
                                    "failed_judgements": 0})
        return cls(folder)

    def check_same(self, card: dict[str, Any]) -> None:
        """Refuse to add to this dataset episodes collected with other settings, seed or sharding."""
        mine = {k: self.card.get(k) for k in ("settings", "seed", "shard", "shards")}
        theirs = {k: _plain(card.get(k)) for k in mine}
        changed = differences(mine, theirs)
        if changed:
            raise DatasetError(f"{self.folder} holds a dataset collected with other settings ({', '.join(changed)}); "
                               "adding to it would mix them. Collect into another folder (collect.out=...).")

    # ------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.rows)

    @property
    def settings(self) -> dict[str, Any]:
        return self.card["settings"]

    @property
    def indices(self) -> list[int]:
        """The committed episodes' indices, in the order they were written."""
        return [r.index for r in self.rows]

    def minari(self):
        """The data as a ``minari.MinariDataset``."""
        from minari import MinariDataset

        return MinariDataset(self._storage)

    def episodes(self) -> Iterator[tuple[Row, Any]]:
        """Each committed episode whose judgement succeeded: its transcript row and Minari ``EpisodeData``."""
        by_id = {r.minari_id: r for r in self.rows if not r.failed}
        if not by_id:
            return
        data = self.minari()
        for episode in data.iterate_episodes(sorted(by_id)):
            yield by_id[episode.id], episode

    def transitions(self) -> tuple[np.ndarray, ...]:
        """Every transition, episodes in index order: states, actions, rewards, next states and terminal flags
        (what ``dat.rl.buffer.add_episode`` takes, one episode after another), and each episode's length."""
        parts: list[tuple[np.ndarray, ...]] = []
        for _, e in sorted(self.episodes(), key=lambda pair: pair[0].index):
            obs = np.asarray(e.observations, np.float32)
            parts.append((obs[:-1], np.asarray(e.actions, np.float32), np.asarray(e.rewards, np.float32), obs[1:],
                          np.asarray(e.terminations, bool), np.asarray(e.truncations, bool)))
        if not parts:
            raise DatasetError(f"{self.folder} holds no usable episode (none committed, or every judgement failed).")
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(6)) + (
            np.array([len(p[2]) for p in parts]),)

    # ------------------------------------------------------------------------------ appending
    def append(self, episodes: Sequence[Episode], indices: Sequence[int]) -> None:
        """Commit a batch: the episodes with a judgement go into the Minari data, every one into the transcripts."""
        from minari.data_collector.episode_buffer import EpisodeBuffer

        if len(episodes) != len(indices):
            raise ValueError(f"append got {len(episodes)} episodes for {len(indices)} indices.")
        known = set(self.indices)
        if known.intersection(indices):
            raise DatasetError(f"{self.folder} already holds episodes {sorted(known.intersection(indices))[:5]}.")
        next_id = sum(not r.failed for r in self.rows)
        buffers, lines = [], []
        for e, index in zip(episodes, indices, strict=True):
            minari_id = None
            if not e.judgement_failed:
                minari_id = next_id
                next_id += 1
                observations = np.concatenate([e.states, e.next_states[-1:]]).astype(np.float32)
                buffers.append(EpisodeBuffer(
                    id=minari_id, seed=int(e.seed), observations=list(observations), actions=list(e.actions),
                    rewards=[float(r) for r in e.rewards], terminations=[bool(x) for x in e.dones],
                    truncations=[bool(x) for x in e.truncated],
                    options={"index": int(index), "task_id": e.task_id, "steered": e.steered}))
            lines.append({"index": int(index), "minari_id": minari_id, "record": e.record.to_dict(),
                          "judgement": e.judgement, "reward": e.reward, **e.meta()})
        if buffers:
            self._write_episodes(buffers)
        number = len(list((self.folder / TRANSCRIPTS).glob("batch-*.jsonl")))
        atomic_write(self.folder / TRANSCRIPTS / f"batch-{number:05d}.jsonl",
                      "".join(json.dumps(line) + "\n" for line in lines))  # the commit
        self.rows += [Row(line["index"], int(line["seed"]), line["minari_id"], line) for line in lines]
        self._update_card()

    # ------------------------------------------------------------------------------ internals
    def _write_episodes(self, buffers: list) -> None:
        """Minari's ``update_episodes``, with the data's size measured once for the batch: Minari measures it after
        every episode by walking the whole folder, which makes a 10,000-episode dataset quadratic in its size."""
        storage = self._storage
        size = storage.metadata.get("dataset_size", 0.0)
        storage.get_size = lambda: size  # read by update_episode_metadata, once per episode
        try:
            storage.update_episodes(buffers)
        finally:
            del storage.get_size
        storage.update_metadata({"dataset_size": storage.get_size()})

    def _read_rows(self) -> list[Row]:
        rows = []
        for path in sorted((self.folder / TRANSCRIPTS).glob("batch-*.jsonl")):
            for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    line = json.loads(text)
                    rows.append(Row(int(line["index"]), int(line["seed"]), line["minari_id"], line))
                except (KeyError, ValueError, TypeError) as err:
                    raise DatasetError(f"{path}:{number}: bad transcript line ({err!r}); the file was not written "
                                       "by dat collect or was edited by hand.") from err
        return rows

    def _open_storage(self):
        from minari.dataset.minari_storage import MinariStorage

        try:
            return MinariStorage.read(self.folder / DATA)
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(f"{self.folder / DATA}: no readable Minari data ({err}).") from err

    def _drop_uncommitted(self) -> None:
        """Forget the Minari episodes a killed writer added after its last committed transcript."""
        committed = sum(not r.failed for r in self.rows)
        if self._storage.total_episodes <= committed:
            return
        for extra in range(committed, self._storage.total_episodes):
            shutil.rmtree(self.folder / DATA / str(extra), ignore_errors=True)
        steps = sum(int(r.line["length"]) for r in self.rows if not r.failed)
        self._storage.update_metadata({"total_episodes": committed, "total_steps": steps})

    def _update_card(self) -> None:
        self.card["episodes"] = len(self.rows)
        self.card["failed_judgements"] = sum(r.failed for r in self.rows)
        _write_json(self.folder / CARD, self.card)


def differences(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The flat keys (``settings.model``) in which two nested settings dicts differ."""
    changed = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            changed += differences(x, y, f"{prefix}{key}.")
        elif x != y:
            changed.append(f"{prefix}{key}")
    return changed


def shard_indices(n: int, shard: int, shards: int) -> list[int]:
    """The episode indices below ``n`` that shard ``shard`` of ``shards`` plays."""
    if not 0 <= shard < shards:
        raise ValueError(f"collect.shard={shard} must be in 0..collect.shards-1 (collect.shards={shards}).")
    return list(range(shard, n, shards))


def shard_folder(out: str | Path, shard: int, shards: int) -> Path:
    """Where shard ``shard`` of ``shards`` writes (the dataset folder itself when there is one shard)."""
    return Path(out) if shards == 1 else Path(out) / SHARDS / f"shard-{shard:03d}-of-{shards:03d}"


def merge(out: str | Path, sources: Sequence[str | Path] | None = None) -> Dataset:
    """Merge shard datasets (default: ``out/shards/*``) into one dataset at ``out``, episodes in index order.

    Refused, before anything is written, unless the shards share their settings, seed and shard count,
    are distinct shards, cover disjoint indices that belong to them, and together are all the shards.
    """
    out = Path(out)
    sources = [Path(s) for s in sources] if sources else sorted(p.parent for p in (out / SHARDS).glob("*/card.json"))
    if not sources:
        raise DatasetError(f"No shards to merge under {out / SHARDS}; collect them first "
                           "(dat collect -m collect.shard=0,1,... collect.shards=k collect.out=...).")
    shards = [Dataset(s) for s in sources]
    verify_shards(shards)
    first = shards[0]
    card = {k: v for k, v in first.card.items() if k not in ("format", "version", "episodes", "failed_judgements")}
    card.update(shard=0, shards=1, merged_from=[str(s.folder) for s in shards], sharded=first.card["shards"])
    if (out / CARD).is_file():
        raise DatasetError(f"{out} already holds a merged dataset; delete its {CARD}, {DATA}/ and {TRANSCRIPTS}/ to "
                           "merge again.")
    space = first._storage
    merged = Dataset.create(out, card, space.observation_space, space.action_space)
    pending = sorted(((r, s) for s in shards for r in s.rows), key=lambda pair: pair[0].index)
    episodes = {id(s): {row.index: e for row, e in s.episodes()} for s in shards}
    for start in range(0, len(pending), 256):
        chunk = pending[start:start + 256]
        merged.append([_episode(row, episodes[id(s)].get(row.index)) for row, s in chunk], [r.index for r, _ in chunk])
    return merged


def verify_shards(shards: Sequence[Dataset]) -> None:
    """Raise a DatasetError naming what is wrong when ``shards`` are not the parts of one collection."""
    first = shards[0]
    for other in shards[1:]:
        changed = differences({k: first.card.get(k) for k in ("settings", "seed", "shards")},
                              {k: other.card.get(k) for k in ("settings", "seed", "shards")})
        if changed:
            raise DatasetError(f"{other.folder} was collected with other settings than {first.folder} "
                               f"({', '.join(changed)}); shards of one dataset share every setting.")
    numbers = [s.card["shard"] for s in shards]
    if len(set(numbers)) != len(numbers):
        raise DatasetError(f"Two folders hold the same shard ({numbers}); each shard is collected once.")
    k = first.card["shards"]
    if sorted(numbers) != list(range(k)):
        raise DatasetError(f"The shards found are {sorted(numbers)} of collect.shards={k}; collect the missing ones "
                           "before merging.")
    seen: set[int] = set()
    for s in shards:
        own = set(s.indices)
        stray = [g for g in own if g % k != s.card["shard"]]
        if stray or len(own) != len(s.indices) or seen & own:
            raise DatasetError(f"{s.folder} holds episode indices that are not its own or are held twice "
                               f"({sorted(stray or (seen & own))[:5]}); its seeds are not disjoint from the others'.")
        seen |= own


def _episode(row: Row, data) -> Episode:
    """An Episode rebuilt from a transcript row and its Minari episode (None: a failed judgement)."""
    line = row.line
    if data is None:
        n, width = int(line["length"]), 0
        empty = np.zeros((n, width), np.float32)
        states, actions, next_states = empty, empty, empty
        rewards, dones, truncated = np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool)
        dones[-1:], truncated[-1:] = bool(line["terminated"]), bool(line["truncated"])
    else:
        obs = np.asarray(data.observations, np.float32)
        states, next_states = obs[:-1], obs[1:]
        actions, rewards = np.asarray(data.actions, np.float32), np.asarray(data.rewards, np.float32)
        dones, truncated = np.asarray(data.terminations, bool), np.asarray(data.truncations, bool)
    return Episode(record=DialogueRecord.from_dict(line["record"]), states=states, actions=actions, rewards=rewards,
                   next_states=next_states, dones=dones, truncated=truncated, judgement=line["judgement"],
                   reward=line["reward"], task_id=line["task_id"], steered=int(line["steered"]), seed=int(line["seed"]),
                   partner_opens=bool(line["partner_opens"]), judgement_failed=bool(line["judgement_failed"]),
                   left_by=line["left_by"], policy=line["policy"], metadata=line.get("metadata", {}))


def read_episodes(folder: str | Path) -> list[Episode]:
    """Every committed episode of a dataset as ``Episode`` objects (failed judgements with empty arrays)."""
    data = Dataset(folder)
    found = {row.index: e for row, e in data.episodes()}
    return [_episode(row, found.get(row.index)) for row in data.rows]


def _slug(name: str) -> str:
    """A Minari dataset name from a folder name (letters, digits, _ and -, no version suffix)."""
    import re

    return re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "dataset"


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _write_json(path: Path, value: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(value, indent=2, default=str) + "\n")
