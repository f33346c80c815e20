"""How fast ``dat collect`` fills a one-turn (moods) dataset, against the collector's settings before datasets.

    python benchmarks/collection.py --episodes 256

Both rows collect the same kind of episodes (``experiment=mood`` with the null point: one steered line after
the partner's scripted opening, random actions, the sentiment judge) in one process, one after the other:

* ``before``: the online collector's settings of ``experiment=mood`` (sampled decoding, 16 dialogues in lockstep)
  with every read a full one (``env.kv_cache=false``: the mean-pooled state then re-reads the whole chat, as the
  collector did before pooled states came from the key/value pass);
* ``dat collect``: the defaults of ``dat collect`` (greedy decoding, 64 in lockstep, mean-pooled states from the
  key/value pass, the key/value store sharing each scenario's text across episodes).

The ceiling is the episodes per hour if nothing but decoding took time (the LM's generate seconds alone); the
share says how close each row comes. Writes ``results/collection.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (CPU settings before torch)
from hydra import compose, initialize_config_dir

import collect as collect_entry
from dat.config import CollectRunConfig, to_config
from dat.dialogue.dataset import Dataset

ROOT = Path(__file__).resolve().parents[1]
OUT = common.RESULTS / "collection.json"
ROWS = {
    "before": ["collect.do_sample=true", "collect.batch_size=16", "env.kv_cache=false"],
    "dat collect": [],
}


def row(name: str, overrides: list[str], episodes: int, folder: Path) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = to_config(compose("collect", overrides=["experiment=mood", "prefix.null_action=true", f"collect.episodes={episodes}",
                                                      f"collect.out={folder}", *overrides]), CollectRunConfig)
    started = time.perf_counter()
    figures = collect_entry.collect(cfg)
    seconds = time.perf_counter() - started
    data = Dataset(folder)
    return {"row": name, "overrides": overrides, "episodes": episodes, "seconds": seconds,
            "episodes_per_hour": figures["episodes_per_hour"], "failed_judgements": data.card["failed_judgements"],
            "generate_seconds": figures["generate_seconds"], "states_seconds": figures["states_seconds"],
            "ceiling_per_hour": episodes / max(figures["generate_seconds"], 1e-9) * 3600,
            "share_of_ceiling": figures["generate_seconds"] / max(seconds, 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=256)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in ROWS.items():
            folder = Path(tmp) / name.replace(" ", "-")
            rows.append(row(name, overrides, args.episodes, folder))
            print(json.dumps(rows[-1]))
            shutil.rmtree(folder, ignore_errors=True)
    result = {"rows": rows, "speedup": rows[-1]["episodes_per_hour"] / rows[0]["episodes_per_hour"],
              "target_per_hour": 10_000, "machine": common.machine()}
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
