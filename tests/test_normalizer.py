"""dat.rl.normalizer: fixed-statistics state standardisation inside the SB3 networks."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from dat.rl.normalizer import StateNormalizer

SPACE = spaces.Box(-np.inf, np.inf, (3,), np.float32)


def test_identity_until_fitted_then_standardises() -> None:
    norm = StateNormalizer(SPACE, eps=1e-3)
    x = th.tensor([[1.0, -2.0, 4.0], [3.0, 0.0, 4.0]])
    assert norm.features_dim == 3
    assert th.allclose(norm(x), x / 1.001)
    norm.set_stats(np.array([2.0, -1.0, 4.0]), np.array([1.0, 1.0, 0.0]))
    expected = th.tensor([[-1 / 1.001, -1 / 1.001, 0.0], [1 / 1.001, 1 / 1.001, 0.0]])
    assert th.allclose(norm(x), expected)  # a constant dimension maps to 0, not NaN
    assert set(norm.state_dict()) == {"mean", "std"}


def test_stats_travel_in_the_state_dict() -> None:
    norm = StateNormalizer(SPACE)
    norm.set_stats(np.array([1.0, 2.0, 3.0]), np.array([0.5, 1.0, 2.0]))
    other = StateNormalizer(SPACE)
    other.load_state_dict(norm.state_dict())
    x = th.randn(4, 3)
    assert th.equal(other(x), norm(x))


def test_bad_stats_are_refused_with_the_reason() -> None:
    norm = StateNormalizer(SPACE)
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        norm.set_stats(np.zeros(4), np.ones(4))
    with pytest.raises(ValueError, match="finite with std >= 0"):
        norm.set_stats(np.zeros(3), np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        norm.set_stats(np.array([0.0, np.nan, 0.0]), np.ones(3))
    assert th.equal(norm.std, th.ones(3))
