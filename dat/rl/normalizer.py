"""Fixed-statistics state normalisation for TD3+BC, as an SB3 features extractor.

TD3+BC standardises every state dimension with the dataset's mean and ``std + eps`` (eps = 1e-3)
and applies the same statistics at evaluation time. SB3's ``VecNormalize`` keeps running
statistics instead, and lives outside the model; this module keeps the statistics inside the
networks so that checkpoints and exported actors carry them.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor


class StateNormalizer(BaseFeaturesExtractor):
    """Flattens observations and standardises them: ``(s − mean) / (std + eps)``.

    It sits in SB3's features-extractor slot, so the actor, both critics and their targets apply
    it to ``obs`` and ``next_obs`` alike, and ``mean``/``std`` are buffers of the policy's
    ``state_dict``: ``TD3BC.save``/``load`` and an export of ``model.actor`` carry them. Until
    :meth:`set_stats` is called it is the identity up to the ``1 + eps`` divisor.
    """

    mean: th.Tensor
    std: th.Tensor

    def __init__(self, observation_space: gym.Space, eps: float = 1e-3) -> None:
        dim = get_flattened_obs_dim(observation_space)
        super().__init__(observation_space, dim)
        self.eps = float(eps)
        self.register_buffer("mean", th.zeros(dim))
        self.register_buffer("std", th.ones(dim))

    def set_stats(self, mean: np.ndarray | th.Tensor, std: np.ndarray | th.Tensor) -> None:
        """Installs dataset statistics (vectors of the flattened state size, std >= 0)."""
        mean_t = th.as_tensor(np.asarray(mean, dtype=np.float32)).flatten()
        std_t = th.as_tensor(np.asarray(std, dtype=np.float32)).flatten()
        if mean_t.shape != self.mean.shape or std_t.shape != self.std.shape:
            raise ValueError(
                f"normaliser stats have shapes {tuple(mean_t.shape)}/{tuple(std_t.shape)}, "
                f"expected ({self.mean.numel()},): compute them from states of this observation space"
            )
        if not (th.isfinite(mean_t).all() and th.isfinite(std_t).all() and (std_t >= 0).all()):
            raise ValueError(
                "normaliser stats must be finite with std >= 0: check the buffer for NaN/inf states"
            )
        self.mean.copy_(mean_t)
        self.std.copy_(std_t)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return (observations.flatten(1) - self.mean) / (self.std + self.eps)
