"""Re-score saved episodes with another judge into a new file, or judge a run's failed episodes again.

    python -m dat.judges.rescore --episodes runs/episodes.jsonl --out runs/episodes.api.jsonl \\
        judge=api judge.api.base_url=http://127.0.0.1:8000/v1 judge.api.model=qwen2.5-7b-instruct
    python -m dat.judges.rescore --run outputs/train/default [judge.api.base_url=...]

``judge=NAME`` picks ``dat_pipeline/conf/judge/NAME.yaml``; ``judge.a.b=value`` overrides one field. With
``--episodes``, each input line is a JSON object with at least ``{"record": DialogueRecord.to_dict(),
...}``; the output line is the same object with ``judgement`` and ``reward`` replaced, every other field
kept as it was, and the input is never modified. With ``--run``, the training episodes of that run
folder whose judgement failed are judged again in place, with the judge the run saved in
``.hydra/config.yaml`` (overrides apply on top) and the run's judge cache; each success is logged in
``episodes/round-NNNN/rejudged.jsonl`` (``dat.judges.rejudge``), and the next ``python train.py`` of
the run adds it to the replay buffer without judging it again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dat.atomic import atomic_path
from dat.judges.base import Judge
from dat.judges.config import BACKENDS, JudgeConfig, RewardWeights
from dat.judges.factory import make_judge
from dat.judges.rejudge import FailedJudgements, run_cache_dir
from dat.judges.reward import reward
from dat.records import DialogueRecord

CONF_DIR = Path(__file__).resolve().parents[2] / "dat_pipeline" / "conf"
"""The entry points' configs (in a checkout and beside an installed ``dat``), whose ``judge/`` presets name judges."""


def load_config(overrides: Sequence[str], conf_dir: Path = CONF_DIR,
                base: dict[str, Any] | None = None) -> JudgeConfig:
    """JudgeConfig from ``judge=NAME`` (``conf_dir/judge/NAME.yaml``) and ``judge.field=value`` overrides, on top
    of ``base`` (a saved judge section; ``judge=NAME`` replaces it) or the defaults."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    name, dotlist = None, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r}: expected judge=NAME or judge.field=value")
        if key.lstrip("+") == "judge":
            name = value
        elif key.lstrip("+").startswith("judge."):
            dotlist.append(f"{key.lstrip('+')[len('judge.'):]}={value}")
        else:
            raise ValueError(f"override {item!r}: only judge=NAME and judge.field=value are understood")
    node = OmegaConf.structured(JudgeConfig)
    if base is not None and name is None:
        try:
            node = OmegaConf.merge(node, base)
        except OmegaConfBaseException as err:
            raise ValueError(f"the saved judge settings: {err}") from None
    if name is not None:
        path = conf_dir / "judge" / f"{name}.yaml"
        if path.exists():
            loaded = OmegaConf.load(path)
            loaded.pop("defaults", None)
            try:
                node = OmegaConf.merge(node, loaded)
            except OmegaConfBaseException as err:
                raise ValueError(f"{path}: {err}") from None
        elif name in BACKENDS:
            node.backend = name
        else:
            options = sorted(p.stem for p in (conf_dir / "judge").glob("*.yaml")) or list(BACKENDS)
            raise ValueError(f"judge={name}: no {path}; choose one of {', '.join(options)}")
    try:
        if dotlist:
            node = OmegaConf.merge(node, OmegaConf.from_dotlist(dotlist))
        return OmegaConf.to_object(node)
    except OmegaConfBaseException as err:
        raise ValueError(f"judge overrides {dotlist}: {err}") from None


def _read(path: Path) -> list[dict[str, Any]]:
    lines = []
    with path.open(encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
                DialogueRecord.from_dict(obj["record"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ValueError(
                    f"{path}:{number}: not an episode line with a valid 'record' ({err!r})") from None
            lines.append(obj)
    return lines


def rescore(episodes: Path, out: Path, judge: Judge, weights: RewardWeights | None = None,
            batch_size: int = 32) -> dict[str, float]:
    """Judge every episode of ``episodes`` again and write them to ``out``; returns a summary."""
    episodes, out = Path(episodes), Path(out)
    if out.resolve() == episodes.resolve():
        raise ValueError(f"--out {out} is the input file; write the re-scored episodes to a new file")
    lines = _read(episodes)
    records = [DialogueRecord.from_dict(obj["record"]) for obj in lines]
    rewards: list[float] = []
    failures = 0
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8") as f:
        for start in range(0, len(lines), batch_size):
            batch, objs = records[start:start + batch_size], lines[start:start + batch_size]
            for obj, record, judgement in zip(objs, batch, judge(batch), strict=True):
                value = reward(judgement, record.steered, weights)
                obj["judgement"], obj["reward"] = judgement.to_dict(), value
                failures += 0 if judgement.ok else 1
                if value is not None:
                    rewards.append(value)
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    summary = {"episodes": float(len(lines)), "failures": float(failures),
               "mean_reward": sum(rewards) / len(rewards) if rewards else float("nan")}
    return {**summary, **judge.metrics()}


def saved(run: Path, section: str) -> dict[str, Any] | None:
    """One section of the config a run saved (``RUN/.hydra/config.yaml``, written by Hydra); None when the
    run saved none."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(run) / ".hydra" / "config.yaml"
    if not path.is_file():
        return None
    try:
        node = OmegaConf.load(path).get(section)  # type: ignore[union-attr]
        found = OmegaConf.to_container(node, resolve=True) if node is not None else None
    except OmegaConfBaseException as err:
        raise ValueError(f"{path}: {err}") from None
    if not isinstance(found, dict):
        raise ValueError(f"{path} has no {section} section; is {run} a training run folder?")
    return found


def run_config(run: Path, overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> JudgeConfig:
    """The judge of a run folder: its saved one with ``overrides`` on top, refused if its reward differs.

    The rewards it gives enter the run's replay buffer next to the run's own, so the backend and the
    reward weights must be the run's (``dat.config.identity`` holds a resume to the same); the server,
    model name, timeouts and the like may change. A run paid per turn is refused: training never adds
    its failed episodes (see ``train._rejudge``)."""
    if (saved(run, "env") or {}).get("reward_per_turn"):
        raise ValueError(f"{run} pays a reward per turn (env.reward_per_turn): one judgement cannot rebuild "
                         "those rewards, so its failed episodes stay out of training")
    judge = saved(run, "judge")
    if judge is None and not overrides:
        raise ValueError(f"{Path(run) / '.hydra' / 'config.yaml'} not found: pass the run's judge settings "
                         "(judge=NAME judge.field=value)")
    cfg = load_config(overrides, conf_dir, base=judge)
    if judge is not None:
        run_cfg = load_config([], conf_dir, base=judge)
        changed = [key for key, a, b in (("judge.backend", cfg.backend, run_cfg.backend),
                                         ("judge.weights", cfg.weights, run_cfg.weights)) if a != b]
        if changed:
            raise ValueError(f"{', '.join(changed)} differ from the run's: its buffer would mix two rewards. "
                             "Compare judges with --episodes IN --out OUT instead.")
    return cfg


def rescore_run(run: Path, judge: Judge, weights: RewardWeights | None = None,
                batch_size: int | None = None) -> dict[str, Any]:
    """Judge the failed training episodes of run folder ``run`` again, logging each success where
    training picks it up (``dat.judges.rejudge``); returns the counts of ``FailedJudgements.rejudge``
    and the judge's counters."""
    episodes = Path(run) / "episodes"
    if not episodes.is_dir():
        raise FileNotFoundError(f"{run} has no episodes/ folder; pass a training run folder (outputs/train/...)")
    counts = FailedJudgements(episodes).rejudge(judge, weights, batch_size=batch_size)
    return {**counts, **judge.metrics()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=Path, help="input episodes JSONL (left intact)")
    parser.add_argument("--out", type=Path, help="output JSONL with the new judgements")
    parser.add_argument("--run", type=Path, help="a training run folder: judge its failed episodes again, in place")
    parser.add_argument("--cache-dir", default=None,
                        help="judge cache folder (default: judge.cache_dir; with --run, the run's cache)")
    parser.add_argument("--conf-dir", type=Path, default=CONF_DIR, help="folder holding judge/*.yaml")
    parser.add_argument("--batch-size", type=int, default=32, help="episodes per judge call")
    parser.add_argument("overrides", nargs="*", help="judge=NAME and judge.field=value")
    args = parser.parse_args(argv)
    if (args.run is None) == (args.episodes is None) or (args.episodes is None) != (args.out is None):
        parser.error("pass either --episodes IN --out OUT, or --run RUN")
    try:
        if args.run is not None:
            cfg = run_config(args.run, args.overrides, args.conf_dir)
            judge = make_judge(cfg, cache_dir=args.cache_dir or run_cache_dir(args.run, cfg.cache_dir))
            summary = rescore_run(args.run, judge, cfg.weights, args.batch_size)
            if summary["still_failed"]:
                print(json.dumps(summary, indent=1))
                print(f"error: {summary['still_failed']} failed episodes of {args.run} still fail "
                      f"({summary['cause']}); fix the judge settings and run this again", file=sys.stderr)
                return 1
        else:
            cfg = load_config(args.overrides, args.conf_dir)
            judge = make_judge(cfg, cache_dir=args.cache_dir)
            summary = rescore(args.episodes, args.out, judge, cfg.weights, args.batch_size)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
