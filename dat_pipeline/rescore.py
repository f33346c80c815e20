"""``dat rescore``: judge saved episodes again with another judge, or a run's failed episodes in place.

    dat rescore --episodes runs/episodes.jsonl --out runs/episodes.api.jsonl \\
        judge=api judge.api.base_url=http://127.0.0.1:8000/v1 judge.api.model=qwen2.5-7b-instruct
    dat rescore --run outputs/train/default [judge.api.base_url=...]

``judge=NAME`` picks ``dat_pipeline/conf/judge/NAME.yaml``; ``judge.a.b=value`` overrides one field. With
``--run``, the judge is the one the run saved in ``.hydra/config.yaml`` (overrides apply on top) with the run's
judge cache (``dat.judges.rescore`` says what is written where). From a checkout: ``python -m dat_pipeline.rescore``.
"""

from __future__ import annotations

from dat_pipeline import CONF

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dat.judges.config import BACKENDS, JudgeConfig
from dat.judges.factory import make_judge
from dat.judges.rejudge import run_cache_dir
from dat.judges.rescore import rescore, rescore_run


def load_config(overrides: Sequence[str], conf_dir: Path = CONF,
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


def run_config(run: Path, overrides: Sequence[str], conf_dir: Path = CONF) -> JudgeConfig:
    """The judge of a run folder: its saved one with ``overrides`` on top, refused if its reward differs.

    The rewards it gives enter the run's replay buffer next to the run's own, so the backend and the
    reward weights must be the run's (``dat.config.identity`` holds a resume to the same); the server,
    model name, timeouts and the like may change. A run paid per turn is refused: training never adds
    its failed episodes (see ``train._rejudge``)."""
    if not Path(run).is_dir():
        raise FileNotFoundError(f"--run {run}: no such folder; pass a training run's folder (outputs/train/<run>, "
                                "the one train.py prints at the end).")
    if not (Path(run) / "episodes").is_dir():
        raise FileNotFoundError(f"--run {run} holds no episodes/ folder; is it a training run folder?")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dat rescore", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=Path, help="input episodes JSONL (left intact)")
    parser.add_argument("--out", type=Path, help="output JSONL with the new judgements")
    parser.add_argument("--run", type=Path, help="a training run folder: judge its failed episodes again, in place")
    parser.add_argument("--cache-dir", default=None,
                        help="judge cache folder (default: judge.cache_dir; with --run, the run's cache)")
    parser.add_argument("--conf-dir", type=Path, default=CONF, help="folder holding judge/*.yaml")
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
