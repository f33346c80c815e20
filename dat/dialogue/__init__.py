"""One dialogue's rules (who reads what, how turns and episodes end), the lockstep runner, collection
over a vector env, episodes on disk, and the first-turn prompts stage 1 trains on. Imports ``dat.lm``,
``dat.action`` and ``dat.judges``."""
