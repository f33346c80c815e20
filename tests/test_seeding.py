from __future__ import annotations

import numpy as np
import torch

from dat.seeding import derive_seed, seed_everything


def test_same_seed_same_streams():
    seed_everything(5)
    first = (np.random.rand(3), torch.rand(3))
    seed_everything(5)
    second = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "env") == derive_seed(0, "env")
    seeds = {derive_seed(s, name, i) for s in range(3) for name in ("env", "noise") for i in range(10)}
    assert len(seeds) == 60 and all(0 <= s < 2**31 for s in seeds)
    assert derive_seed(0, "env", 1) == 1803981127  # pinned: changing the derivation changes every run
