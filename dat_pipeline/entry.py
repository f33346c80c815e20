"""One way to make a Hydra entry point: the schema registered, the run-folder resolver, the configs of
``dat_pipeline/conf`` and one-line errors, around a function that takes the typed config."""

from __future__ import annotations

from dat_pipeline import CONF, runtime

from collections.abc import Callable
from typing import Any, TypeVar

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from dat.config import register_configs, to_config

T = TypeVar("T")


def hydra_entry(config_name: str, schema: type, run: Callable[[Any], T]) -> Callable[[], T]:
    """The ``main`` of an entry point: Hydra composes ``dat_pipeline/conf/<config_name>.yaml`` (whose defaults name
    ``<config_name>_schema``, the dataclass ``schema``), ``run`` gets it as a ``schema`` instance, and any error
    leaves as one clear line (``runtime.one_line_errors``). Hydra names the job after ``run``'s module, so
    ``dat_pipeline.train`` logs as ``train`` whichever script or command started it."""
    register_configs()
    ConfigStore.instance().store(name=f"{config_name}_schema", node=schema)
    OmegaConf.register_new_resolver("or_default", runtime.run_folder_name, replace=True)

    def main(cfg: DictConfig) -> T:
        return run(to_config(cfg, schema))

    main.__module__ = run.__module__  # Hydra's job name (and nothing else) comes from here
    return hydra.main(version_base="1.3", config_path=str(CONF), config_name=config_name)(
        runtime.one_line_errors(main))
