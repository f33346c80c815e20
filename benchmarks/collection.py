"""How fast ``dat collect`` fills a dataset, against the collector's settings before datasets, one-turn and multi-turn.

    python benchmarks/collection.py --episodes 2000 --before 256 --multi-turn 64

Every row collects random-action episodes into a fresh dataset, one row after another in one process:

* ``before``: the online collector's settings (sampled decoding, 16 dialogues in lockstep), every read a full one
  (``env.kv_cache=false``: the mean-pooled state re-reads the whole chat, as the collector did before pooled
  states came from the key/value pass) and no memo (``model.memo_entries=0``);
* ``dat collect``: its defaults (greedy decoding, 64 in lockstep, pooled states from the key/value pass, the
  key/value store, the memo that reads each task's opening line and first state once);
* ``dat collect, 128 wide``: the same with 128 dialogues in lockstep.

The one-turn rows play ``experiment=mood`` (one steered line after the partner's opening line, the sentiment
judge); the multi-turn rows the default task (``python train.py``'s action space, scenarios and judge). Each row
reports its episodes per hour over the whole run and in its steady state (the second half of its batches, timed
by the commit times of their transcript files: by then the memo holds every task's opening), the hours a
10,000-episode dataset takes at the overall rate, and the ceiling: the episodes per hour if nothing but decoding
took time (the LM's generate seconds alone). Writes ``results/collection.json`` and its table into
``docs/datasets.md`` (``--markdown-only`` rewrites the table from the JSON).
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # dat_pipeline, where the project is not installed

from dat_pipeline import CONF  # noqa: E402
from dat_pipeline import collect as collect_entry  # noqa: E402

from dat.config import CollectRunConfig, register_configs, to_config  # noqa: E402
from dat.dialogue.dataset import TRANSCRIPTS, Dataset  # noqa: E402

OUT, PAGE = measuring.RESULTS / "collection.json", ROOT / "docs" / "datasets.md"
MARKERS = ("<!-- results:collection -->", "<!-- /results:collection -->")
BEFORE = ["collect.do_sample=true", "collect.batch_size=16", "env.kv_cache=false", "model.memo_entries=0"]
ONE_TURN = ["experiment=mood"]


def row(name: str, task: str, overrides: list[str], episodes: int, folder: Path) -> dict:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("collect", overrides=[*overrides, f"collect.episodes={episodes}",
                                                      f"collect.out={folder}"]), CollectRunConfig)
    started = time.perf_counter()
    figures = collect_entry.collect(cfg)
    seconds = time.perf_counter() - started
    data = Dataset(folder)
    per_hour = figures["episodes_per_hour"]
    return {"row": name, "task": task, "overrides": overrides, "episodes": episodes, "seconds": seconds,
            "batch_size": cfg.collect.batch_size, "episodes_per_hour": per_hour,
            "steady_episodes_per_hour": steady(folder, cfg.collect.batch_size),
            "hours_for_10000": 10_000 / per_hour, "failed_judgements": data.card["failed_judgements"],
            "generate_seconds": figures["generate_seconds"], "states_seconds": figures["states_seconds"],
            "ceiling_per_hour": episodes / max(figures["generate_seconds"], 1e-9) * 3600,
            "share_of_ceiling": figures["generate_seconds"] / max(seconds, 1e-9)}


def steady(folder: Path, batch: int) -> float | None:
    """Episodes per hour over the second half of the batches (None with fewer than 4 batches)."""
    commits = sorted(p.stat().st_mtime for p in (folder / TRANSCRIPTS).glob("batch-*.jsonl"))
    if len(commits) < 4:
        return None
    half = len(commits) // 2
    return (len(commits) - 1 - half) * batch / max(commits[-1] - commits[half], 1e-9) * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=2000, help="one-turn episodes of each dat collect row")
    parser.add_argument("--before", type=int, default=256, help="one-turn episodes of the before row")
    parser.add_argument("--multi-turn", type=int, default=64, help="episodes of each multi-turn row (0: none)")
    parser.add_argument("--markdown-only", action="store_true")
    args = parser.parse_args()
    if not args.markdown_only:
        measure(args)
    start, end = MARKERS
    page = PAGE.read_text()
    table = markdown(json.loads(OUT.read_text()))
    PAGE.write_text(re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: f"{start}\n{table}\n{end}", page,
                           flags=re.S))
    print(f"wrote the table into {PAGE}")


def markdown(result: dict) -> str:
    m = result["machine"]

    def rate(x: float | None) -> str:
        return "n/a" if x is None else f"{x:,.0f}"

    lines = [f"_{m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['date']}; "
             "`python benchmarks/collection.py`._", "",
             "| task | collector | episodes | per hour | steady per hour | hours for 10,000 | decoding-only ceiling "
             "per hour | share of ceiling |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['task']} | {r['row']} | {r['episodes']} | {rate(r['episodes_per_hour'])} | "
                     f"{rate(r['steady_episodes_per_hour'])} | {r['hours_for_10000']:.1f} | "
                     f"{rate(r['ceiling_per_hour'])} | {r['share_of_ceiling']:.0%} |")
    lines += ["", "Speed-up of `dat collect` over the earlier settings: " + ", ".join(
        f"{task} {x:.1f}x" for task, x in result["speedup"].items()) + "."]
    return "\n".join(lines)


def measure(args) -> None:
    plan = [("before", "one-turn (moods)", ONE_TURN + BEFORE, args.before),
            ("dat collect", "one-turn (moods)", ONE_TURN, args.episodes),
            ("dat collect, 128 wide", "one-turn (moods)", [*ONE_TURN, "collect.batch_size=128"], args.episodes)]
    if args.multi_turn:
        plan += [("before", "multi-turn (default task)", BEFORE, args.multi_turn),
                 ("dat collect", "multi-turn (default task)", [], args.multi_turn)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, task, overrides, episodes) in enumerate(plan):
            folder = Path(tmp) / f"row-{k}"
            rows.append(row(name, task, overrides, episodes, folder))
            print(json.dumps(rows[-1]), flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    speedups = {task: next(r["episodes_per_hour"] for r in rows if r["task"] == task and r["row"] == "dat collect")
                / next(r["episodes_per_hour"] for r in rows if r["task"] == task and r["row"] == "before")
                for task in dict.fromkeys(r["task"] for r in rows)}
    measuring.write_result("collection", {"rows": rows, "speedup": speedups, "target_per_hour": 10_000})


if __name__ == "__main__":
    main()
