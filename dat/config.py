"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` fill these in; Hydra validates every key and type against them, so a
typo (``algo.alpah=1``) or a wrong type (``seed=abc``) fails at start with a message naming the key.
``main()`` turns the composed config into these dataclasses once; each component gets its own part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from dat.llm import SamplingConfig
from dat.loading import ModelConfig
from dat.prefix import PrefixConfig


@dataclass
class LoggerConfig:
    """Where metrics go: Weights & Biases (offline by default) or nowhere."""

    backend: str = "wandb"
    """wandb or none."""
    mode: str = "offline"
    """W&B mode: offline (no account, no network), online, or disabled."""
    project: str = "dat"
    """W&B project name."""
    entity: str | None = None
    """W&B entity (team or user); None uses the default."""
    group: str | None = None
    """W&B group; sweeps set it to the sweep directory so their jobs appear together."""
    tags: list[str] = field(default_factory=list)
    """W&B tags for the run."""


@dataclass
class TrainConfig:
    """The whole run: one object, built from the composed Hydra config in ``main()``."""

    seed: int = 0
    """The run seed; every random stream derives from it."""
    prompt: str = "Hi! The bike is a 2019 Trek, recently serviced, and I'm asking $180 for it."
    """Partner line for the demonstration generation (until training is wired in)."""
    goal: str = "You are a buyer. Negotiate the price of the used bike down to $100 or less."
    """System text for the demonstration generation."""
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    prefix: PrefixConfig = field(default_factory=PrefixConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


def register_configs() -> None:
    """Register the schemas so ``conf/*.yaml`` files are validated against them."""
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)
    store.store(group="prefix", name="prefix_schema", node=PrefixConfig)
    store.store(group="logger", name="logger_schema", node=LoggerConfig)


def to_config(cfg: DictConfig | dict[str, Any], schema: type = TrainConfig) -> Any:
    """The composed config as typed dataclasses (validating it once more against ``schema``)."""
    merged = OmegaConf.merge(OmegaConf.structured(schema), cfg)
    return OmegaConf.to_object(merged)
