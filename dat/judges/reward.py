"""From a judgement to the scalar reward the planner learns from.

Normalised (the default), every dimension is first mapped onto [0, 1] by its range (all ranges are
10 wide), so the reward is in [0, 1]: the default weights ``{"goal": 1}`` give ``goal / 10``. With
``overall=True`` the reward is Sotopia's overall score (mean of all available dimensions), as DAT used;
normalised it is ``(overall - mean of the lows) / 10``. Unnormalised, the raw weighted mean is returned.
Weighted dimensions the judge did not score are left out and the remaining weights renormalised.
"""

from __future__ import annotations

from dat.judges.config import RewardWeights
from dat.judges.dimensions import normalise
from dat.judges.judgement import Judgement


def reward(judgement: Judgement, steered: int, weights: RewardWeights | None = None) -> float | None:
    """The steered agent's reward, or None when there is nothing to learn from.

    None means the judgement failed or scored none of the weighted dimensions: skip or re-judge it,
    never treat it as 0.

    >>> from dat.judges.judgement import AgentScores
    >>> j = Judgement(scores=(AgentScores(goal=7, relationship=-1), AgentScores()))
    >>> reward(j, 0), reward(j, 0, RewardWeights(overall=True, normalise=False)), reward(j, 1)
    (0.7, 3.0, None)
    """
    weights = weights or RewardWeights()
    if not judgement.ok:
        return None
    available = judgement.scores[steered].available()
    if weights.overall:
        chosen = {name: 1.0 for name in available}
    else:
        chosen = {n: w for n, w in weights.weights.items() if w > 0 and n in available}
    total = sum(chosen.values())
    if total <= 0:
        return None
    if weights.normalise:
        return sum(w * normalise(n, available[n]) for n, w in chosen.items()) / total
    return sum(w * available[n] for n, w in chosen.items()) / total
