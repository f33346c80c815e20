"""The DAT task as Gymnasium environments.

Importing ``envs`` registers ``dat/Dialogue-v0``: ``gym.make`` gives one dialogue
(:class:`envs.dialogue_env.DialogueEnv`), ``gym.make_vec(..., num_envs=N)`` N dialogues in lockstep
(:class:`envs.vector_env.DialogueVectorEnv`, the one training collects with). The entry points are
strings, so torch and the LM code load only when an env is made.
"""

from gymnasium.envs.registration import register, registry

if "dat/Dialogue-v0" not in registry:
    register(id="dat/Dialogue-v0", entry_point="envs.dialogue_env:DialogueEnv",
             vector_entry_point="envs.vector_env:DialogueVectorEnv")
