"""Stage 1: the up-projection the planner acts through, prepared before any RL.

``prefix.path`` loads a saved projection; ``prefix.kind=pca`` builds DAT's training-free basis
(cached beside the model); ``prefix.kind=learned`` reuses the self-cloned projection cached for
this model and prefix setting, or trains it by self-cloning (``dat.action.experimental.selfclone``) and caches it;
``prefix.kind=behaviours`` does the same for a contrastive behaviour basis (``dat.action.basis``),
made on the first turn of one train task per scenario.
The projection is frozen during RL.
"""

from __future__ import annotations

from pathlib import Path

from dat.action.basis import basis_folder, dtype_name, ensure_basis
from dat.action.experimental.selfclone import ensure_projection, projection_folder
from dat.action.projection import UpProjection, build_projection
from dat.dialogue.openings import behaviour_prompts, opening_chats, prompt_settings
from dat.lm.frozen import FrozenLM
from dat.lm.loading import artefact_folder
from dat.seeding import derive_seed


def prepare_projection(cfg, lm: FrozenLM, tasks, out: Path) -> UpProjection:
    """The frozen up-projection for this run (see module docstring)."""
    embedding = lm.model.get_input_embeddings().weight
    artefacts = artefact_folder(cfg.model)
    if cfg.prefix.path or cfg.prefix.kind in ("pca", "anchors"):
        projection = build_projection(embedding, cfg.prefix, artefacts, lm.tokenizer)
        record = UpProjection.record_of(cfg.prefix.path) if cfg.prefix.path else {"kind": cfg.prefix.kind}
    elif cfg.prefix.kind == "behaviours":
        embedder = None
        if any(b.scorer == "goal" for b in cfg.behaviours.behaviours):
            from dat.judges.embedding import EmbeddingJudge

            embedder = EmbeddingJudge()
        seed = derive_seed(cfg.behaviours.seed, "behaviour-prompts")  # the basis must not depend on the run seed
        projection = ensure_basis(lm, lambda: behaviour_prompts(lm, tasks, cfg.env, seed), cfg.prefix,
                                  cfg.behaviours, artefacts, embedder, dialogue=basis_dialogue(cfg))
        folder = basis_folder(artefacts, cfg.behaviours, dtype_name(lm))
        record = {**UpProjection.record_of(folder), "cached_at": str(folder)}
    else:
        # Trained once per model and setting, then reused by every run whose settings match (checked
        # there); the chats are built only when training is needed.
        folder = projection_folder(artefacts, cfg.selfclone)
        projection = ensure_projection(
            lm, lambda: opening_chats(lm, tasks, cfg.env, derive_seed(cfg.selfclone.seed, "selfclone")),
            cfg.prefix, cfg.selfclone, artefacts)
        record = {**UpProjection.record_of(folder), "cached_at": str(folder)}
    _check_matches(projection, cfg.prefix)
    projection.cfg.norm = cfg.prefix.norm  # the scale stays a knob, also for a trained projection
    projection.cfg.null_action = cfg.prefix.null_action  # so does the null point: it adds no vector to what was trained
    projection.cfg.sharpness = cfg.prefix.sharpness
    projection.requires_grad_(False)
    projection.save(out / "projection", record=record)
    return projection


def basis_dialogue(cfg) -> dict:
    """The dialogue settings a behaviour basis made for ``cfg`` records: those its train prompts depend on."""
    return prompt_settings(cfg.env, cfg.env.scenarios.train, cfg.env.scenarios.ids)


def _check_matches(projection: UpProjection, prefix) -> None:
    """A saved projection must have the shape the config asks for, or the planner's actions won't fit."""
    for field in ("kind", "tokens", "action_dim", "tied"):
        saved, wanted = getattr(projection.cfg, field), getattr(prefix, field)
        if saved != wanted:
            raise ValueError(
                f"The saved up-projection has prefix.{field}={saved!r} but the config asks for {wanted!r}. "
                "Match the config to it, or give the new setting its own selfclone.name (or prefix.path)."
            )
