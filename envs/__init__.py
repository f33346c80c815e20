"""The DAT task as Gymnasium environments.

Importing ``envs`` registers ``dat/Dialogue-v0`` (:class:`envs.dialogue_env.DialogueEnv`); the
entry point is a string, so torch and the LM code load only when an env is made.
"""

from gymnasium.envs.registration import register, registry

if "dat/Dialogue-v0" not in registry:
    register(id="dat/Dialogue-v0", entry_point="envs.dialogue_env:DialogueEnv")
