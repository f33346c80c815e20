"""Experiment tracking: a W&B run (offline by default) or a no-op with the same methods.

Every metric of a run goes through one ``Tracker`` (convention: metrics are namespaced
``train/``, ``rollout/``, ``judge/``, ``eval/``, ``perf/`` and logged from one place). Each Hydra job
opens and finishes its own run, so the jobs of a sweep never share one (a known W&B pitfall when
several jobs run in one process).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SECRET_KEY = re.compile(r"(api_?key|token|secret|password)", re.IGNORECASE)


def scrub(config: Any) -> Any:
    """A copy of ``config`` with every value under a secret-looking key replaced (never sent to W&B)."""
    if isinstance(config, Mapping):
        return {k: "<redacted>" if SECRET_KEY.search(str(k)) and v else scrub(v) for k, v in config.items()}
    if isinstance(config, list | tuple):
        return [scrub(v) for v in config]
    return config


class Tracker:
    """No-op tracker: the interface every tracker offers, and what ``logger=none`` gives."""

    run_id: str | None = None
    run_dir: Path | None = None

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Record scalar metrics at ``step`` (the training round)."""

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        """Record a table (e.g. eval transcripts)."""

    def image(self, name: str, path: Path, step: int) -> None:
        """Record a picture (a PNG written by the run: evaluation chart, learning curves)."""

    def artifact(self, name: str, kind: str, folder: Path, aliases: Sequence[str] = ()) -> None:
        """Version a folder (the export, a checkpoint) as an artifact of the run."""

    def summary(self, metrics: Mapping[str, Any]) -> None:
        """Record final values."""

    def finish(self) -> None:
        """Close the run (flushes offline files)."""


class WandbTracker(Tracker):
    """A W&B run whose files live in the job's output directory."""

    def __init__(self, cfg, config: Mapping[str, Any], output_dir: Path, name: str, run_id: str | None = None):
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags) or None,
            name=name, id=run_id, resume="allow" if run_id else None, mode=cfg.mode,
            dir=str(output_dir), config=scrub(config), reinit="finish_previous",
            settings=wandb.Settings(console="off", silent=True, x_disable_stats=not cfg.system_stats),
        )
        self.run.define_metric("round")
        self.run.define_metric("*", step_metric="round")  # every chart over rounds, not W&B's internal step
        self.run_id = self.run.id
        self.run_dir = Path(self.run.dir).parent if self.run.dir else None

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({"round": step, **metrics})

    def table(self, name: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], step: int) -> None:
        self.run.log({"round": step, name: self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def image(self, name: str, path: Path, step: int) -> None:
        if Path(path).is_file():
            self.run.log({"round": step, name: self._wandb.Image(str(path))})

    def artifact(self, name: str, kind: str, folder: Path, aliases: Sequence[str] = ()) -> None:
        art = self._wandb.Artifact(name, type=kind)
        art.add_dir(str(folder))
        self.run.log_artifact(art, aliases=list(aliases) or None)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            self.run.summary[key] = value

    def finish(self) -> None:
        self.run.finish()


def make_tracker(cfg, config: Mapping[str, Any], output_dir: Path, name: str, run_id: str | None = None) -> Tracker:
    """The tracker ``cfg`` (a ``LoggerConfig``) asks for."""
    if cfg.backend == "none" or cfg.mode == "disabled":
        return Tracker()
    if cfg.backend != "wandb":
        raise ValueError(f"logger.backend={cfg.backend!r} is not one of: wandb, none.")
    if cfg.mode not in ("offline", "online"):
        raise ValueError(f"logger.mode={cfg.mode!r} is not one of: offline, online, disabled.")
    return WandbTracker(cfg, config, output_dir, name, run_id)
