"""The action space: up-projections from a planner's action to prefix embeddings (PCA, anchors, self-cloned,
behaviour bases), how they are trained (self-cloning, contrastive behaviour prefixes) and the steerability
statistics that check they move the reply. Imports ``dat.lm`` only (and the shared records and seeds);
the prompts they are trained on are passed in (``dat.dialogue.openings`` builds them)."""
