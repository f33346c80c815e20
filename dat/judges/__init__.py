"""Judges score finished dialogues on Sotopia's seven dimensions; the score becomes the RL reward.

>>> from dat.judges import JudgeConfig, make_judge, reward
>>> judge = make_judge(JudgeConfig(backend="rule", cache=False))
>>> # judgements = judge(records); rewards = [reward(j, r.steered) for j, r in zip(judgements, records)]

Backends (``api``, ``local``, ``embedding``, ``rule``) import their heavy dependencies lazily.
"""

from dat.judges.base import Judge, JudgeStats
from dat.judges.cache import CachedJudge, JudgeCache
from dat.judges.config import (
    ApiJudgeConfig,
    EmbeddingJudgeConfig,
    JudgeConfig,
    LocalJudgeConfig,
    RewardWeights,
    RuleJudgeConfig,
)
from dat.judges.dimensions import DIMENSIONS, RANGES
from dat.judges.factory import make_judge
from dat.judges.judgement import AgentScores, Judgement, Usage
from dat.judges.reward import reward

__all__ = [
    "DIMENSIONS", "RANGES", "AgentScores", "ApiJudgeConfig", "CachedJudge", "EmbeddingJudgeConfig", "Judge",
    "JudgeCache", "JudgeConfig", "JudgeStats", "Judgement", "LocalJudgeConfig", "RewardWeights",
    "RuleJudgeConfig", "Usage", "make_judge", "reward",
]
