"""Stage 1: the up-projection the planner acts through, prepared before any RL.

``prefix.path`` loads a saved projection; ``prefix.kind=pca`` builds DAT's training-free basis
(cached beside the model); ``prefix.kind=learned`` reuses the self-cloned projection cached for
this model and prefix setting, or trains it by self-cloning (``dat.selfclone``) and caches it.
The projection is frozen during RL.
"""

from __future__ import annotations

from pathlib import Path

from dat.llm import FrozenLM
from dat.loading import artefact_folder
from dat.prefix import UpProjection, build_projection


def prepare_projection(cfg, lm: FrozenLM, tasks, out: Path) -> UpProjection:
    """The frozen up-projection for this run (see module docstring)."""
    embedding = lm.model.get_input_embeddings().weight
    if cfg.prefix.path or cfg.prefix.kind == "pca":
        projection = build_projection(embedding, cfg.prefix, artefact_folder(cfg.model))
    else:
        raise ValueError("prefix.kind=learned needs prefix.path (self-cloning arrives in dat.selfclone).")
    projection.requires_grad_(False)
    projection.save(out / "projection", record=UpProjection.record_of(cfg.prefix.path) if cfg.prefix.path else
                    {"kind": cfg.prefix.kind})
    return projection
