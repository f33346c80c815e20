"""Statistics of the steerability benchmark, and the gate a prefix configuration must pass before RL.

The question is whether the *choice of action* reproducibly changes what the frozen LM says. The
benchmark draws K random actions per prompt, samples n replies per action, and scores them with
cheap rewards. If actions matter, two samples of the same action resemble each other more than
samples of different actions (correlation, F), and the action that looked best keeps its advantage
on fresh samples. Pure sampling noise gives correlation ~0, F ~1 and no fresh advantage; these
functions report exactly that on noise (``tests/test_steerability.py``).

Arrays: ``rewards[p, k, s]`` is the reward of sample ``s`` of action ``k`` on prompt ``p``. Prompts
differ in their typical reward, so every statistic is computed *within* prompts and then pooled.
All functions are pure NumPy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

MIN_CORRELATION = 0.3
"""Gate: pooled same-action correlation needed on at least one cheap reward."""
MIN_BEST_OF_K_Z = 2.0
"""Gate: best-of-K advantage on fresh samples, in standard errors, needed on at least one reward."""
MAX_DEGENERATE = 0.02
"""Gate: largest share of empty or degenerate steered replies."""
MAX_LOGPROB_COST = 0.55
"""Gate: largest drop of mean token log-prob under the unsteered model (nats/token)."""
MAX_CHARACTER_DROP = 0.02
"""Gate: steered replies may be in character at most this much less often than unsteered ones (share)."""
MAX_DISTINCT_DROP = 0.05
"""Gate: the share of distinct replies per prompt may fall by at most this much."""
MAX_BELIEVABILITY_DROP = 0.2
"""Gate, where the local judge scored it: mean believability (0..10) may fall by at most this much (2 %)."""

META = re.compile(
    r"^\s*[(\[*<]|\bbackground\s*:|'s background|\bpersonality\b|\b(?:your|my|their) goal\s*:|\bscenario\s*:"
    r"|\bparticipants\s*:|\bthe conversation (?:starts|begins|has begun|continues)|\byou speak first"
    r"|\bturn #\d|\bin character\b|\bin (?:a|the) role\b|\bas an ai\b|\blanguage model\b|\bsecret\s*:",
    re.IGNORECASE,
)
"""Meta lines: stage directions, prompt text echoed (backgrounds, goals, the opening cue), role talk."""


def out_of_character(text: str, own: str, other: str) -> bool:
    """A reply that is not the agent speaking in character (rule-based; see ``META``).

    Flags stage directions and echoed prompt text, speaking as the partner ("Helena: ...", "As
    Helena, ..."), and speaking of oneself in the third person ("Jun Park is ...").

    >>> out_of_character("(The conversation starts. You speak first.)", "Jun Park", "Helena Brandt")
    True
    >>> out_of_character("Helena Brandt: I won't lower it.", "Jun Park", "Helena Brandt")
    True
    >>> out_of_character("Jun Park is going to work hard.", "Jun Park", "Helena Brandt")
    True
    >>> out_of_character("Helena, could we talk about the rent?", "Jun Park", "Helena Brandt")
    False
    """
    if META.search(text):
        return True
    names = {n for n in (other, *other.split()[:1]) if n}
    head = text.strip()
    if any(re.match(rf"{re.escape(n)}\s*:|as {re.escape(n)}\b|i(?: am|'m) {re.escape(n)}\b", head, re.I)
           for n in names):
        return True
    mine = {n for n in (own, *own.split()[:1]) if n}
    return any(re.match(rf"{re.escape(n)}(?:'s\b|\s+(?:is|was|has|will|would|says|said)\b)", head, re.I)
               for n in mine)


def distinct_share(texts_per_prompt: Sequence[Sequence[str]]) -> float:
    """Mean over prompts of the share of distinct replies (case and surrounding space ignored)."""
    shares = [len({t.strip().lower() for t in texts}) / len(texts) for texts in texts_per_prompt if texts]
    return float(np.mean(shares)) if shares else float("nan")


def is_degenerate(text: str, tokens: Sequence[object]) -> bool:
    """Empty or looping reply: < 3 letters, or (from 5 tokens on) one token > 40 % or < 50 % distinct bigrams.

    The repetition rules start at 5 tokens, where a short normal reply ("Yes.") cannot trip them.

    >>> is_degenerate("ok", [1]), is_degenerate("no no no no no no", [7, 7, 7, 7, 7, 7])
    (True, True)
    """
    if sum(c.isalpha() for c in text) < 3:
        return True
    tokens = list(tokens)
    if len(tokens) < 5:
        return False
    _, counts = np.unique(np.array([str(t) for t in tokens]), return_counts=True)
    if counts.max() > 0.4 * len(tokens):
        return True
    bigrams = list(zip(tokens[:-1], tokens[1:], strict=True))
    return len(set(bigrams)) < 0.5 * len(bigrams)


def _check(rewards: np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, dtype=float)
    if r.ndim != 3 or r.shape[1] < 2 or r.shape[2] < 2:
        raise ValueError(f"rewards must be (prompts, actions >= 2, samples >= 2); got shape {r.shape}.")
    return r


def same_action_correlation(rewards: np.ndarray) -> dict[str, float]:
    """Correlation between two samples of the same action, pooled over prompts (double-entry Pearson).

    Each prompt is centred on its own mean first, so prompts that differ in level do not fake a
    correlation. ``se`` is the null standard error 1/sqrt(prompts x actions); ``per_prompt`` and
    ``per_prompt_se`` are the mean and SE over prompts of the per-prompt correlations.
    """
    r = _check(rewards)[..., :2]
    centred = r - r.mean(axis=(1, 2), keepdims=True)
    x = np.concatenate([centred[..., 0].ravel(), centred[..., 1].ravel()])
    y = np.concatenate([centred[..., 1].ravel(), centred[..., 0].ravel()])
    pooled = _pearson(x, y)
    per = [_pearson(np.r_[p[:, 0], p[:, 1]], np.r_[p[:, 1], p[:, 0]]) for p in centred]
    per_se = float(np.std(per, ddof=1) / math.sqrt(len(per))) if len(per) > 1 else float("nan")
    return {
        "corr": pooled,
        "se": 1.0 / math.sqrt(r.shape[0] * r.shape[1]),
        "per_prompt": float(np.mean(per)),
        "per_prompt_se": per_se,
    }


def correlation_p_value(rewards: np.ndarray, permutations: int = 1000, seed: int = 0) -> float:
    """One-sided permutation p-value of the pooled same-action correlation.

    The null re-pairs each prompt's samples at random (actions mean nothing). It matters for sparse
    rewards (a keyword that few replies hit), where the pooled correlation is far from normal and
    1/sqrt(n) understates its spread.
    """
    r = _check(rewards)[..., :2]
    observed = same_action_correlation(r)["corr"]
    rng = np.random.default_rng(seed)
    flat = r.reshape(r.shape[0], -1)
    hits = 0
    for _ in range(permutations):
        shuffled = np.stack([rng.permutation(row) for row in flat]).reshape(r.shape)
        hits += same_action_correlation(shuffled)["corr"] >= observed
    return (hits + 1) / (permutations + 1)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return 0.0
    return float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))


def anova(rewards: np.ndarray) -> dict[str, float]:
    """One-way ANOVA of reward on action, within prompts and pooled: F, its dfs and the two spreads.

    ``between_std`` is the std of per-action means, ``within_std`` the RMS std between samples of
    one action; with no action effect F ~ 1 and between_std ~ within_std / sqrt(samples).
    """
    r = _check(rewards)
    p, k, n = r.shape
    means = r.mean(axis=2)
    between = n * ((means - means.mean(axis=1, keepdims=True)) ** 2).sum() / (p * (k - 1))
    within = ((r - means[..., None]) ** 2).sum() / (p * k * (n - 1))
    f = between / within if within > 0 else (float("inf") if between > 0 else 1.0)
    return {
        "F": float(f),
        "df_between": p * (k - 1),
        "df_within": p * k * (n - 1),
        "between_std": float(np.sqrt(means.var(axis=1, ddof=1).mean())),
        "within_std": float(np.sqrt(within)),
    }


def best_actions(rewards: np.ndarray) -> np.ndarray:
    """Per prompt, the index of the action with the highest mean reward over its samples."""
    return _check(rewards).mean(axis=2).argmax(axis=1)


def best_of_k(rewards: np.ndarray, fresh: np.ndarray) -> dict[str, float]:
    """Advantage of the selected action on fresh samples over the average random action.

    ``fresh[p, m]`` are new rewards of ``best_actions(rewards)[p]``. The advantage is averaged over
    prompts; its SE combines the fresh samples' variance and the variance of the K action means.
    Selection happened on other samples, so a pure-noise action effect gives advantage ~0.
    """
    r = _check(rewards)
    fresh = np.asarray(fresh, dtype=float)
    if fresh.ndim != 2 or fresh.shape[0] != r.shape[0] or fresh.shape[1] < 2:
        raise ValueError(f"fresh must be (prompts={r.shape[0]}, samples >= 2); got shape {fresh.shape}.")
    means = r.mean(axis=2)
    advantage = fresh.mean(axis=1) - means.mean(axis=1)
    var = fresh.var(axis=1, ddof=1) / fresh.shape[1] + means.var(axis=1, ddof=1) / means.shape[1]
    se = float(np.sqrt(var.sum()) / r.shape[0])
    adv = float(advantage.mean())
    z = adv / se if se > 0 else (0.0 if adv == 0 else math.copysign(float("inf"), adv))
    return {"advantage": adv, "se": se, "z": float(z), "per_prompt": advantage.tolist()}


def kl(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """KL(p || q) in nats over the last axis, from log-probabilities."""
    logp, logq = np.asarray(logp, dtype=float), np.asarray(logq, dtype=float)
    return (np.exp(logp) * (logp - logq)).sum(axis=-1)


def js(logp: np.ndarray, logq: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in nats (at most ln 2) over the last axis, from log-probabilities."""
    logp, logq = np.asarray(logp, dtype=float), np.asarray(logq, dtype=float)
    logm = np.logaddexp(logp, logq) - math.log(2.0)
    return 0.5 * kl(logp, logm) + 0.5 * kl(logq, logm)


def mean_pairwise_js(logps: np.ndarray) -> float:
    """Mean JS divergence over all pairs of rows of ``logps`` ``(actions, vocab)``."""
    logps = np.asarray(logps, dtype=float)
    pairs = [js(logps[i], logps[j]) for i in range(len(logps)) for j in range(i + 1, len(logps))]
    return float(np.mean(pairs)) if pairs else 0.0


def pseudo_actions(samples: np.ndarray, n: int = 2) -> np.ndarray:
    """Unsteered samples ``(prompts, m)`` regrouped as ``(prompts, m // n, n)``: what noise looks like."""
    samples = np.asarray(samples, dtype=float)
    k = samples.shape[1] // n
    return samples[:, : k * n].reshape(samples.shape[0], k, n)


def _no_worse(shares: Mapping | None, label: str, slack: float) -> tuple[bool, str]:
    """Whether a steered share (``{"steered", "baseline"}``) stays within ``slack`` of the unsteered one."""
    if shares is None:
        return False, f"FAIL: {label} not measured"
    ok = shares["steered"] >= shares["baseline"] - slack
    return ok, (f"{'ok' if ok else 'FAIL'}: {label} {shares['steered']:.2f} vs unsteered {shares['baseline']:.2f}; "
                f"may fall by <= {slack}")


def behaviour_checks(result: Mapping) -> dict[str, tuple[bool, str]]:
    """For a behaviour basis (``result["behaviours"]``, the gate's own-scorer report), per behaviour: whether its own
    scorer meets the gate's two reward criteria (same-action correlation and best-of-K on fresh samples), and the
    line that says so. The gate itself asks that one reward move; a basis whose every prefix has a job asks each."""
    out = {}
    for name, r in result.get("behaviours", {}).items():
        corr, z = r["corr"]["corr"], r["best_of_k"]["z"]
        ok = corr >= MIN_CORRELATION and z >= MIN_BEST_OF_K_Z
        out[name] = (ok, f"{'ok' if ok else 'FAIL'}: {name}: same-action correlation {corr:.2f} (needs >= "
                         f"{MIN_CORRELATION}), best-of-K {z:.1f} SE (needs >= {MIN_BEST_OF_K_Z})")
    return out


def gate(result: Mapping) -> tuple[bool, list[str]]:
    """Whether a benchmarked configuration may be used for RL, and why (one line per criterion).

    Reads a configuration's entry of the benchmark JSON: ``split``, ``rewards[name]["corr"]`` and
    ``["best_of_k"]["z"]``, ``degenerate`` (share), ``fluency["cost"]`` (nats/token), and
    ``in_character`` / ``distinct`` (``{"steered", "baseline"}`` shares) and, where measured,
    ``believability`` (the local judge's 0..10 score, same shape): a configuration that moves rewards
    by breaking character or collapsing onto a few replies does not pass.
    """
    reasons, passed = [], True
    if result.get("split") != "eval":
        passed = False
        reasons.append(f"measured on split {result.get('split')!r}; the gate needs held-out (eval) scenarios")
    rewards = result["rewards"]
    corr = {name: r["corr"]["corr"] for name, r in rewards.items()}
    zs = {name: r["best_of_k"]["z"] for name, r in rewards.items() if r.get("best_of_k")}
    best_c = max(corr, key=corr.get)
    ok = corr[best_c] >= MIN_CORRELATION
    passed &= ok
    reasons.append(
        f"{'ok' if ok else 'FAIL'}: best same-action correlation {corr[best_c]:.2f} ({best_c}); "
        f"needs >= {MIN_CORRELATION}"
    )
    best_z = max(zs, key=zs.get) if zs else None
    ok = best_z is not None and zs[best_z] >= MIN_BEST_OF_K_Z
    passed &= ok
    shown = f"{zs[best_z]:.1f} SE ({best_z})" if best_z else "not measured"
    reasons.append(
        f"{'ok' if ok else 'FAIL'}: best-of-K advantage on fresh samples {shown}; "
        f"needs >= {MIN_BEST_OF_K_Z} SE"
    )
    ok = result["degenerate"] <= MAX_DEGENERATE
    passed &= ok
    reasons.append(
        f"{'ok' if ok else 'FAIL'}: degenerate replies {100 * result['degenerate']:.1f} %; "
        f"needs <= {100 * MAX_DEGENERATE:.0f} %"
    )
    for key, label, slack in (("in_character", "in-character share", MAX_CHARACTER_DROP),
                              ("distinct", "distinct-reply share", MAX_DISTINCT_DROP)):
        ok, reason = _no_worse(result.get(key), label, slack)
        passed &= ok
        reasons.append(reason)
    believability = result.get("believability")
    if believability and all(math.isfinite(believability[k]) for k in ("steered", "baseline")):
        ok, reason = _no_worse(believability, "local-judge believability", MAX_BELIEVABILITY_DROP)
        passed &= ok
        reasons.append(reason)
    cost = result["fluency"]["cost"]
    ok = cost <= MAX_LOGPROB_COST
    passed &= ok
    reasons.append(
        f"{'ok' if ok else 'FAIL'}: log-prob cost {cost:.2f} nats/token; needs <= {MAX_LOGPROB_COST}"
    )
    return bool(passed), reasons
