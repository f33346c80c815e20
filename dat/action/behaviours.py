"""Behaviours: what each prefix of a behaviour basis is trained to do, and how replies are scored and paired.

On the default model no training-free or self-cloned up-projection moves the reply reproducibly
(docs/results/steerability.md), and prefixes trained by plain NLL on the model's own best replies
move it only a little: those replies are already likely, so the NLL has little to learn. What pulls
prefixes apart is a contrast. A behaviour is a name and a scorer (sentiment, length, a question, a
regex, the scenario's own rule checks, a probe prompt's test, similarity to the goal) with a direction;
the frozen model's own replies to the *train* prompts are ranked by the scorer, and per prompt the top
replies are *chosen* and the bottom ones *rejected* (``select_pairs``). The behaviour's prefix is then
trained on those pairs with a DPO-style objective against the model without prefix (``contrastive_loss``,
``dat.action.basis``)::

    L = -log sigma(beta * [(log p_P(chosen) - log p_0(chosen)) - (log p_P(rejected) - log p_0(rejected))])
        + nll * (-log p_P(chosen) / tokens)

The K prefixes form the basis of the ``behaviours`` up-projection (``dat.action.projection``): an
action a in [-1, 1]^K gives the prefix ``softmax(sharpness * a) @ basis``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from dat.action.projection import DEPTHS, PrefixConfig
from dat.lm.frozen import SamplingConfig
from dat.records import DialogueRecord

SCORERS = ("sentiment", "length", "question", "regex", "rules", "probe", "goal")
DIRECTIONS = ("up", "down")
RUN_FIELDS = ("name", "checkpoint_every", "prebuilt")  # may change without changing what is trained
# recorded only when set: older bases still match
LATER_FIELDS = ("hint", "nll", "hint_pool", "drop_recitals", "drop_out_of_character", "scale")


@dataclass
class Behaviour:
    """One behaviour of the basis: replies that score high (``up``) or low (``down``) on a scorer."""

    name: str = "positive"
    """Name (a file name: letters, digits, _ and -)."""
    scorer: str = "sentiment"
    """sentiment (VADER), length (words), question (asks one), regex (``pattern``), rules (the scenario's
    own rule checks for the agent), probe (the test of an instruction-stability prompt, in [0, 1]: does
    the reply follow the system prompt's rule), goal (MiniLM similarity of the reply to the agent's goal)."""
    direction: str = "up"
    """up: chosen = the highest-scoring replies; down: the lowest."""
    pattern: str | None = None
    """scorer=regex: the pattern (case-insensitive) whose presence scores 1."""
    hint: str | None = None
    """A targeted pool: also sample ``pool`` replies per prompt with this instruction appended to the
    partner's last line (``{goal}`` stands for the agent's goal). They are scored, paired and trained on
    as replies to the *plain* prompt, so the prefix learns what the instruction does. For behaviours the
    model rarely shows unprompted (stating a price: 0 of 96 pooled replies to the price scenarios)."""
    hint_pool: int | None = None
    """Replies sampled with the hint per prompt (``BehaviourConfig.pool`` when None). A behaviour the model shows
    in a few hinted replies of a hundred gets more positives from a larger targeted pool, at no cost to the
    others (each samples its own)."""
    drop_recitals: bool | None = None
    """True: leave out of the targeted pool the hinted replies that recite the hint (``dat.restating.restates``:
    "(Say the price you want ...)"). Such a reply can score as a positive, yet it teaches the prefix to quote an
    instruction the plain prompt never had. None keeps every hinted reply, as bases made before the field did."""
    drop_out_of_character: bool | None = None
    """True: leave out of the targeted pool the hinted replies that are not the agent speaking in character, by the
    gate's own test (``dat.action.steerability.out_of_character``: a stage direction, echoed prompt text, the partner's
    voice). The hint reaches the model as a bracketed aside and the model answers in kind ("(smiling) Ah, ...") in a
    tenth of hinted replies, under 2 % of its own; a prefix learned from them speaks so too. None keeps them, as
    bases made before the field did."""
    scale: float | None = None
    """Multiplier of this behaviour's trained prefix in the basis (1 when None); ``prefix.norm`` scales them all.
    Prefixes differ in how far they move the model: one may steer its scorer weakly at a small cost while another
    costs fluency, and a single norm cannot suit both."""
    nll: float | None = None
    """This behaviour's weight of the NLL term on its chosen replies (``BehaviourConfig.nll`` when None). One
    prefix may need it where the others do not: a behaviour learned from a few targeted positives (an amount)
    can loop on its own tokens while contrast alone keeps the others fluent."""


def _default_behaviours() -> list[Behaviour]:
    return [Behaviour("positive", "sentiment", "up"), Behaviour("negative", "sentiment", "down")]


@dataclass
class BehaviourConfig:
    """How the behaviour basis (prefix.kind=behaviours) is made."""

    behaviours: list[Behaviour] = field(default_factory=_default_behaviours)
    """The behaviours, one prefix each (prefix.action_dim must equal their number)."""
    pool: int = 16
    """Replies sampled from the frozen model per train prompt (the pool pairs are selected from)."""
    top: int = 3
    """Per prompt, the ``top`` best replies are chosen and the ``top`` worst rejected (up to top^2 pairs)."""
    beta: float = 0.25
    """Inverse temperature of the contrastive (DPO) objective, on summed log-probs. Smaller lets the prefix
    drift further from the model (stronger, costlier); chosen on the train split as the value between too
    costly and too weak that passes every gate criterion (docs/results/steerability.md)."""
    nll: float = 0.0
    """Weight of an extra NLL term on the chosen replies (per token); 0: contrast only. A behaviour's own
    ``nll`` overrides it for that prefix."""
    steps: int = 50
    """Optimiser steps per behaviour and round."""
    batch_size: int = 8
    """Pairs per step."""
    lr: float = 0.05
    """Adam learning rate of the prefix embeddings."""
    max_norm: float = 8.0
    """Each prefix token's norm is clipped to this many median token-embedding norms after every step."""
    rounds: int = 1
    """Rounds of pool -> pairs -> training; later rounds add replies sampled with the current prefix."""
    prompts: int = 32
    """Use at most this many train prompts (the first turn of one task per scenario)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(max_new_tokens=32))
    """How pool replies are sampled (the env's decoding, shorter replies)."""
    seed: int = 0
    """Seed of pool sampling and batch order."""
    name: str = "sentiment"
    """Folder name of the basis under <model artefacts>/behaviours/ (reused when complete and matching)."""
    checkpoint_every: int = 10
    """Write a behaviour's resumable checkpoint every this many steps."""
    prebuilt: bool = True
    """When the cache has no basis of this name, take the copy shipped with the package (``dat.action.basis.PREBUILT``)
    if one exists for this model and name with these exact settings; False makes it here instead."""


@dataclass
class PromptInfo:
    """What the scorers need to know about a train prompt: the steered agent's goal and rule pattern."""

    goal: str = ""
    rules: str = ""
    """Regex of the agent's rule checks ("" when it has none)."""
    names: tuple[str, str] = ("", "")
    """The agent's name and its partner's (the in-character test needs them; "" where unknown)."""
    test: Callable[[str], float] | None = None
    """The prompt's own test of a reply in [0, 1] (instruction-stability prompts; None elsewhere). Given as
    a function so this layer needs no judge: the dialogue layer binds the probe set's test."""


AMOUNT = r"\$\s?\d|\d+\s*(?:dollars|bucks)"
"""What a price check looks for in a reply: a currency amount."""


def rule_pattern(record: DialogueRecord, side: int) -> str:
    """Regex of the agent's rule checks (keywords, regexes, an amount for price checks), else its goal's words."""
    parts = []
    for check in record.checks:
        if check.get("agent") != side:
            continue
        if check["kind"] == "price":
            parts.append(AMOUNT)
        elif check["kind"] in ("keyword", "regex"):
            pats = check["pattern"] if isinstance(check["pattern"], list) else [check["pattern"]]
            parts += [rf"\b{re.escape(p)}\b" if check["kind"] == "keyword" else p for p in pats]
    if not parts:
        words = {w.lower() for w in re.findall(r"[A-Za-z]{5,}", record.goals[side])}
        parts = [rf"\b{w}" for w in sorted(words)]
    return "|".join(parts)


# ------------------------------------------------------------------------------------------ scoring
class Scorers:
    """Scores first lines of replies by each configured behaviour's scorer."""

    def __init__(self, infos: Sequence[PromptInfo], embedder=None):
        self.infos = list(infos)
        self.embedder = embedder
        self._vader = None
        self._goals: Tensor | None = None

    def __call__(self, behaviour: Behaviour, prompt: int, texts: Sequence[str]) -> np.ndarray:
        if behaviour.scorer == "sentiment":
            if self._vader is None:
                from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

                self._vader = SentimentIntensityAnalyzer()
            return np.array([self._vader.polarity_scores(t)["compound"] for t in texts])
        if behaviour.scorer == "length":
            return np.array([float(len(t.split())) for t in texts])
        if behaviour.scorer == "question":
            return np.array([float("?" in t) for t in texts])
        if behaviour.scorer in ("regex", "rules"):
            pattern = behaviour.pattern if behaviour.scorer == "regex" else self.infos[prompt].rules
            if not pattern:
                return np.zeros(len(texts))
            rule = re.compile(pattern, re.IGNORECASE)
            return np.array([float(bool(rule.search(t))) for t in texts])
        if behaviour.scorer == "probe":
            test = self.infos[prompt].test
            return np.array([test(t) for t in texts], dtype=float) if test else np.zeros(len(texts))
        if behaviour.scorer == "goal":
            if self.embedder is None:
                raise ValueError(f"Behaviour {behaviour.name!r} (scorer=goal) needs a sentence embedder.")
            if self._goals is None:
                self._goals = self.embedder.embed([i.goal or " " for i in self.infos])
            vectors = self.embedder.embed([t or " " for t in texts])
            return (vectors @ self._goals[prompt]).numpy().astype(float)
        raise ValueError(f"Behaviour {behaviour.name!r}: scorer={behaviour.scorer!r} is not one of {SCORERS}.")


def select_pairs(scores: np.ndarray, top: int, direction: str = "up") -> list[tuple[int, int]]:
    """(chosen, rejected) index pairs among one prompt's replies: the ``top`` best against the ``top`` worst.

    Only pairs whose chosen reply scores strictly better than the rejected one count, so a prompt
    on which the scorer cannot tell replies apart gives no pairs.

    >>> select_pairs(np.array([0.1, 0.9, 0.5, -0.2]), top=1)
    [(1, 3)]
    >>> select_pairs(np.array([0.1, 0.9, 0.5, -0.2]), top=1, direction="down")
    [(3, 1)]
    >>> select_pairs(np.zeros(4), top=2)
    []
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r} is not one of {DIRECTIONS}.")
    signed = np.asarray(scores, dtype=float) * (1.0 if direction == "up" else -1.0)
    order = np.argsort(-signed, kind="stable")
    best, worst = order[:top], order[::-1][:top]
    return [(int(c), int(r)) for c in best for r in worst if signed[c] > signed[r]]


def contrastive_loss(chosen: Tensor, chosen_ref: Tensor, rejected: Tensor, rejected_ref: Tensor,
                     beta: float) -> Tensor:
    """The DPO objective per pair: -log sigma(beta * (chosen margin - rejected margin)), summed log-probs."""
    return -F.logsigmoid(beta * ((chosen - chosen_ref) - (rejected - rejected_ref)))


def check_config(prefix: PrefixConfig, cfg: BehaviourConfig) -> None:
    """Fail before any work on a basis that cannot be made as configured, naming the field."""
    names = [b.name for b in cfg.behaviours]
    if prefix.kind != "behaviours":
        raise ValueError(f"A behaviour basis is a prefix.kind=behaviours projection; got {prefix.kind!r}.")
    if prefix.action_dim != len(names):
        raise ValueError(f"prefix.action_dim={prefix.action_dim} must equal the number of behaviours "
                         f"({len(names)}: {', '.join(names)}).")
    if len(set(names)) != len(names) or not all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names):
        raise ValueError(f"behaviours: names must be distinct and use letters, digits, _ or -; got {names}.")
    for b in cfg.behaviours:
        if b.scorer not in SCORERS:
            raise ValueError(f"behaviours[{b.name}].scorer={b.scorer!r} is not one of {', '.join(SCORERS)}.")
        if b.direction not in DIRECTIONS:
            raise ValueError(f"behaviours[{b.name}].direction={b.direction!r} is not one of up, down.")
        if b.scorer == "regex" and not b.pattern:
            raise ValueError(f"behaviours[{b.name}]: scorer=regex needs a pattern.")
        if b.hint_pool is not None and (b.hint_pool < 2 or not b.hint):
            raise ValueError(f"behaviours[{b.name}].hint_pool={b.hint_pool} needs a hint and must be >= 2 "
                             f"(or null for behaviours.pool).")
        if b.drop_recitals and not b.hint:
            raise ValueError(f"behaviours[{b.name}].drop_recitals=true needs a hint (only hinted replies recite one).")
        if b.drop_out_of_character and not b.hint:
            raise ValueError(f"behaviours[{b.name}].drop_out_of_character=true needs a hint (it filters the hinted "
                             f"replies).")
        if b.scale is not None and b.scale <= 0:
            raise ValueError(f"behaviours[{b.name}].scale={b.scale} must be > 0 (or null for 1).")
        if b.nll is not None and b.nll < 0:
            raise ValueError(f"behaviours[{b.name}].nll={b.nll} must be >= 0 (or null for behaviours.nll).")
        if b.hint is not None:
            try:
                b.hint.format(goal="")
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"behaviours[{b.name}].hint={b.hint!r}: only {{goal}} may be filled in "
                                 f"(write other braces twice); {err!r}.") from None
    if prefix.depth not in DEPTHS:
        raise ValueError(f"prefix.depth={prefix.depth!r} is not one of: {', '.join(DEPTHS)}.")
    if cfg.pool < 2 or cfg.top < 1 or cfg.steps < 1 or cfg.rounds < 1:
        raise ValueError("behaviours.pool must be >= 2 and behaviours.top, steps and rounds >= 1.")


def logit_names(prefix: PrefixConfig, cfg: BehaviourConfig) -> list[str]:
    """What each action coordinate weighs, in order: the behaviours, then ``null`` where the basis has a null point
    (empty for other kinds). An action's largest logit names the behaviour the sharp softmax plays."""
    if prefix.kind != "behaviours":
        return []
    return [b.name for b in cfg.behaviours] + (["null"] if prefix.null_action else [])


MADE_IN = "float32"
"""The dtype every basis was made in before the dtype became part of its settings (recorded only when it
differs, so those bases still match)."""


def basis_settings(model: str, prefix: PrefixConfig, cfg: BehaviourConfig, dtype: str = MADE_IN) -> dict:
    """The settings a basis depends on: the model and the dtype it runs in, how it is made, and the prefix
    shape it fills.

    The dtype belongs to the basis: a prefix trained against the float32 model steers the bfloat16 one
    less reliably (``benchmarks/results/steerability_seed1_bfloat16.json``), so each dtype gets its own."""
    made = {k: v for k, v in asdict(cfg).items() if k not in RUN_FIELDS}
    made["behaviours"] = [{k: v for k, v in b.items() if v is not None or k not in LATER_FIELDS}
                          for b in made["behaviours"]]
    shape = {k: asdict(prefix)[k] for k in ("kind", "position", "tokens", "action_dim")}
    if prefix.depth != "input":  # recorded only when deep, so input bases made before the field still match
        shape["depth"] = prefix.depth
    return {"model": model, "behaviours": made, "prefix": shape, **({"dtype": dtype} if dtype != MADE_IN else {})}
