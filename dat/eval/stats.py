"""Intervals and paired tests for comparing a steered policy with its unsteered baseline.

A steering method claims improvements of a few tenths of a point on a 10-point judge scale, which
only shows up when the comparison is *paired*: the steered and the unsteered episode that share a
scenario and a seed differ only by the steering, so their difference cancels the (large) scenario
and partner effects. Episodes of one scenario are also correlated with each other, so when scenario
ids are given every resampling and permutation treats a scenario as one unit (a cluster): resampling
episodes instead would pretend there is more independent evidence than there is.

Failed judgements arrive as NaN. They are dropped and counted, never averaged in as a score.
Pure NumPy; every random draw comes from ``seed``, so the same inputs give the same numbers.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

EXACT_MAX_UNITS = 16
"""Up to this many units the sign-flip test enumerates all 2**n sign patterns (65 536 at most)."""

_CHUNK = 2_000_000
"""Largest number of resampled indices drawn at once, to keep memory flat for large samples."""

Groups = Sequence[Hashable] | np.ndarray | None
"""One group label (scenario id) per episode, or None to treat every episode as its own unit."""


@dataclass(frozen=True)
class PairedResult:
    """Treated minus baseline, estimated on aligned pairs, with a bootstrap interval and a p-value."""

    mean_diff: float
    """Mean of the per-pair differences (treated - baseline) over the kept pairs."""
    ci_low: float
    """Lower end of the percentile bootstrap interval (NaN with fewer than two units)."""
    ci_high: float
    """Upper end of the percentile bootstrap interval (NaN with fewer than two units)."""
    p_value: float
    """Two-sided sign-flip permutation p-value for 'no difference' (NaN without pairs)."""
    n_pairs: int
    """Pairs where both sides were judged."""
    n_groups: int
    """Resampling units: groups (scenarios) holding at least one kept pair, or n_pairs without groups."""
    n_dropped: int
    """Pairs dropped because either side is NaN (a failed judgement)."""
    level: float
    """Coverage of the interval, e.g. 0.95."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95; got {level!r}")


def _as_1d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of per-episode scores, got shape {arr.shape}")
    return arr


def _group_codes(groups: Groups, n: int, name: str) -> np.ndarray:
    """Integer codes for group labels (any hashable: scenario ids, ints), or one code per item."""
    if groups is None:
        return np.arange(n)
    labels = list(groups)
    if len(labels) != n:
        raise ValueError(
            f"{name}: {len(labels)} group labels for {n} scores; give one scenario id per episode"
        )
    index: dict[Hashable, int] = {}
    return np.array([index.setdefault(g, len(index)) for g in labels], dtype=int)


def _unit_sums(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-unit sums and counts: the mean of any resample is sum(sums) / sum(counts)."""
    _, inverse = np.unique(codes, return_inverse=True)
    sums = np.bincount(inverse, weights=values).astype(float)
    counts = np.bincount(inverse).astype(float)
    return sums, counts


def _bootstrap_interval(
    sums: np.ndarray, counts: np.ndarray, level: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile interval of the episode-weighted mean when whole units are resampled."""
    k = len(sums)
    if k < 2:
        return float("nan"), float("nan")
    stats = np.empty(n_boot)
    step = max(1, _CHUNK // k)
    for start in range(0, n_boot, step):
        idx = rng.integers(0, k, size=(min(step, n_boot - start), k))
        stats[start : start + len(idx)] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    low, high = np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


def _sign_flip_p(sums: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided p-value: how often flipping the sign of whole units gives a mean at least as extreme.

    Under 'no effect' each unit's difference is as likely negative as positive, so its sign can be
    flipped without changing the distribution. Exact over all 2**k patterns for small k; otherwise
    Monte Carlo with the +1 correction so that the p-value is never 0.
    """
    k = len(sums)
    if k == 0:
        return float("nan")
    observed = abs(sums.sum())
    tol = 1e-9 * max(1.0, float(np.abs(sums).sum()))
    if k <= EXACT_MAX_UNITS:
        bits = (np.arange(2**k)[:, None] >> np.arange(k)) & 1
        totals = np.abs((2 * bits - 1) @ sums)
        return float(np.mean(totals >= observed - tol))
    hits = 0
    step = max(1, _CHUNK // k)
    for start in range(0, n_perm, step):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(step, n_perm - start), k))
        hits += int(np.sum(np.abs(signs @ sums) >= observed - tol))
    return (hits + 1) / (n_perm + 1)


def bootstrap_ci(
    values: Any,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    groups: Groups = None,
) -> tuple[float, float, float]:
    """Mean and percentile bootstrap interval of ``values``: ``(mean, low, high)``.

    NaNs (failed judgements) are ignored. With ``groups`` (one scenario id per value) whole groups are
    resampled. Empty input gives ``(nan, nan, nan)``; a single unit gives ``(mean, nan, nan)``
    because one observation says nothing about spread, and a zero-width interval would claim it does.

    >>> bootstrap_ci([1.0, 2.0, 3.0])[0]
    2.0
    """
    _check_level(level)
    arr = _as_1d(values, "values")
    codes = _group_codes(groups, len(arr), "groups")
    keep = ~np.isnan(arr)
    arr, codes = arr[keep], codes[keep]
    if len(arr) == 0:
        return float("nan"), float("nan"), float("nan")
    sums, counts = _unit_sums(arr, codes)
    low, high = _bootstrap_interval(sums, counts, level, n_boot, np.random.default_rng([seed, 1]))
    return float(arr.mean()), low, high


def paired_difference(
    treated: Any,
    baseline: Any,
    groups: Groups = None,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    n_perm: int = 10_000,
) -> PairedResult:
    """Paired comparison of ``treated`` with ``baseline``, aligned element by element (same seed).

    Units are pairs, or groups of pairs when ``groups`` gives a scenario id per pair. The interval
    resamples units; the p-value flips the sign of each unit's summed difference (exact for at most
    ``EXACT_MAX_UNITS`` units, else ``n_perm`` random patterns). Both use the episode-weighted mean of
    the differences, which is the plain mean of per-group means when groups are balanced.
    """
    _check_level(level)
    t = _as_1d(treated, "treated")
    b = _as_1d(baseline, "baseline")
    if t.shape != b.shape:
        raise ValueError(
            f"treated has {len(t)} scores but baseline has {len(b)}; pairs must be aligned "
            "(same scenario and seed at the same index)"
        )
    codes = _group_codes(groups, len(t), "groups")
    keep = ~(np.isnan(t) | np.isnan(b))
    diff, codes = (t - b)[keep], codes[keep]
    n_dropped = int((~keep).sum())
    if len(diff) == 0:
        nan = float("nan")
        return PairedResult(nan, nan, nan, nan, 0, 0, n_dropped, level)
    sums, counts = _unit_sums(diff, codes)
    low, high = _bootstrap_interval(sums, counts, level, n_boot, np.random.default_rng([seed, 2]))
    p = _sign_flip_p(sums, n_perm, np.random.default_rng([seed, 3]))
    return PairedResult(float(diff.mean()), low, high, p, len(diff), len(sums), n_dropped, level)


def summarize_conditions(
    scores: Mapping[str, Mapping[str, Any]],
    baseline: str = "unsteered",
    groups: Groups = None,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    n_perm: int = 10_000,
    versus: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Per condition and dimension: mean, interval, counts, and the paired difference to ``baseline``.

    ``scores[condition][dimension]`` holds one score per episode (NaN = failed judgement); every
    condition must list its episodes in the same order as the baseline (same scenario and seed at the
    same index), so that pairing is meaningful; ``groups`` is then one scenario id per episode, shared by
    all conditions. The result is plain data (see ``dat.eval.report``)::

        {"baseline": str, "level": float, "n_boot": int, "n_perm": int, "unit": "scenario" | "episode",
         "conditions": [str, ...], "dimensions": [str, ...],
         "results": {condition: {dimension: {"mean", "low", "high", "n", "n_failed", "n_groups",
                                             "diff": PairedResult.to_dict() | None}}}}

    ``diff`` is None for the baseline itself and for dimensions the baseline does not have.

    ``versus=(treated, control)`` adds one more paired comparison when both conditions were played,
    ``"versus": {"treated", "control", "results": {dimension: PairedResult.to_dict()}}``: the planner against
    the zero action, say, which tells what choosing the action from the state adds to one constant action.
    """
    if baseline not in scores:
        raise ValueError(f"baseline condition {baseline!r} not in scores; conditions are {sorted(scores)}")
    conditions = [baseline, *[c for c in scores if c != baseline]]
    dimensions: list[str] = []
    for c in conditions:
        dimensions += [d for d in scores[c] if d not in dimensions]
    results: dict[str, dict[str, Any]] = {}
    for c in conditions:
        results[c] = {}
        for d, values in scores[c].items():
            arr = _as_1d(values, f"scores[{c!r}][{d!r}]")
            codes = _group_codes(groups, len(arr), f"groups for scores[{c!r}][{d!r}]")
            mean, low, high = bootstrap_ci(arr, level, n_boot, seed, groups=codes)
            valid = ~np.isnan(arr)
            entry: dict[str, Any] = {
                "mean": mean, "low": low, "high": high, "n": int(valid.sum()),
                "n_failed": int((~valid).sum()), "n_groups": len(np.unique(codes[valid])), "diff": None,
            }
            if c != baseline and d in scores[baseline]:
                base = _as_1d(scores[baseline][d], f"scores[{baseline!r}][{d!r}]")
                if len(base) != len(arr):
                    raise ValueError(
                        f"scores[{c!r}][{d!r}] has {len(arr)} episodes but the baseline has {len(base)}; "
                        "evaluate every condition on the same scenarios and seeds"
                    )
                entry["diff"] = paired_difference(arr, base, codes, level, n_boot, seed, n_perm).to_dict()
            results[c][d] = entry
    unit = "episode" if groups is None else "scenario"
    summary = {
        "baseline": baseline, "level": level, "n_boot": n_boot, "n_perm": n_perm, "unit": unit,
        "conditions": conditions, "dimensions": dimensions, "results": results,
    }
    if versus is not None and all(c in scores for c in versus):
        treated, control = versus
        pairs = {d: (_as_1d(scores[treated][d], d), _as_1d(scores[control][d], d))
                 for d in scores[treated] if d in scores[control]}
        summary["versus"] = {"treated": treated, "control": control, "results": {
            d: paired_difference(t, c, _group_codes(groups, len(t), "groups"), level, n_boot, seed, n_perm).to_dict()
            for d, (t, c) in pairs.items()}}
    return summary
