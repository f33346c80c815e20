"""The steerability gate's protocol: does the choice of action reproducibly change what the frozen LM says?

On the first turn of one task per scenario of a held-out set (the chats built by the env's own rules, the
partner opening with a greedy line), ``actions`` random actions uniform in [-1, 1]^d (the RL action space)
are each sampled twice, beside ``baseline`` unsteered samples per prompt. Replies are scored as the env
records them (first line) by the behaviour scorers of ``dat.action.behaviours``: VADER sentiment, MiniLM
similarity to the agent's goal, and a hit of the scenario's own rule checks (``keyword``). Also measured:
fluency (mean token log-prob under the unsteered model), degenerate replies, replies in character, distinct
replies, the local judge's believability, the first reply token's KL to no prefix and JS between actions.
The best action per prompt (chosen on its two samples) is sampled ``fresh`` times more, to see whether its
advantage over the average action survives. The statistics and the verdict are ``dat.action.steerability``'s.

``dat gate prefix=<preset>`` runs it on any action space and scenario set (``dat_pipeline.gate``);
``experiments/steerability.py`` runs it over the presets and writes docs/results/steerability.md's tables.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from dat.action import steerability as st
from dat.action.behaviours import Behaviour, Scorers
from dat.action.projection import UpProjection
from dat.dialogue.openings import opening_chats, prompt_info
from dat.dialogue.rules import EnvConfig, clean_utterance
from dat.judges.local import LocalJudge
from dat.lm import layerprefix
from dat.lm.frozen import FrozenLM, SamplingConfig
from dat.lm.promptcache import PromptCache
from dat.records import Utterance
from dat.seeding import derive_seed

REWARDS = {"sentiment": Behaviour("sentiment", "sentiment"), "goal": Behaviour("goal", "goal"),
           "keyword": Behaviour("keyword", "rules")}
"""The cheap rewards the gate correlates with the action, as behaviour scorers (``keyword``: the rule checks)."""
SAMPLES = 2
"""Samples per random action: the same-action correlation needs two."""
OWN = "behaviour:"
"""The prefix of a behaviour basis's own scorers among the gate's scores (``behaviour:<name>``)."""


@dataclass
class GateConfig:
    """How the gate is measured (``dat gate``: the ``gate`` section)."""

    scenarios: str = "bundled:eval"
    """The prompts' task set (``envs.scenarios`` syntax, or a folder); the gate passes only on held-out tasks."""
    prompts: int = 8
    """At most this many prompts: the first turn of one task per scenario."""
    actions: int = 16
    """K random actions, each sampled ``SAMPLES`` times per prompt."""
    fresh: int = 8
    """Fresh samples of each prompt's best action (best-of-K)."""
    baseline: int = 16
    """Unsteered samples per prompt (reference levels and the noise row)."""
    max_new_tokens: int = 32
    """Length of every sampled reply (the env's decoding otherwise)."""
    believability: bool = True
    """Score every reply's believability with the local judge (about a second per reply on a laptop CPU)."""

    def validate(self) -> GateConfig:
        for name in ("prompts", "actions", "fresh", "baseline", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"gate.{name}={getattr(self, name)} must be at least 1.")
        return self


class Prompts:
    """The gate's chats (the steered agent's first turn), what its scorers know of each, and their prompt cache."""

    def __init__(self, lm: FrozenLM, tasks: Sequence, cfg: GateConfig, seed: int, env: EnvConfig | None = None):
        picked, seen = [], set()
        for task in tasks:
            if task.scenario.id not in seen:
                seen.add(task.scenario.id)
                picked.append(task)
        self.tasks = picked[: cfg.prompts]
        if not self.tasks:
            raise ValueError(f"gate.scenarios={cfg.scenarios!r} holds no tasks.")
        env = replace(env or EnvConfig(), sampling=SamplingConfig(max_new_tokens=cfg.max_new_tokens, do_sample=False))
        self.chats = opening_chats(lm, self.tasks, env, derive_seed(seed, "openers"), sides=(0,),
                                   partner_opens=(True,))
        self.infos = [prompt_info(t.record([], 0)) for t in self.tasks]
        self.names = [t.names for t in self.tasks]
        self.cache = PromptCache(lm, self.chats)

    def __len__(self) -> int:
        return len(self.chats)

    def describe(self) -> list[dict]:
        return [{"task": t.id, "goal": i.goal, "keyword": i.rules, "opening": c[-1]["content"]}
                for t, i, c in zip(self.tasks, self.infos, self.chats, strict=True)]


class Scorer:
    """The gate's rewards and quality measures of raw generations (scored as the env records them: first line)."""

    def __init__(self, lm: FrozenLM, prompts: Prompts, embedder, believability: bool = True,
                 behaviours: Sequence[Behaviour] = ()):
        self.lm, self.prompts = lm, prompts
        self.scorers = Scorers(prompts.infos, embedder)
        self.own = {f"{OWN}{b.name}": b for b in behaviours}
        """A behaviour basis's own scorers, each oriented so that higher shows more of its behaviour."""
        # The local judge's believability of the steered agent (0..10), the reply read after the opener.
        self.judge = LocalJudge(lm.model, lm.tokenizer, lm.name, dimensions=("believability",)) if believability \
            else None

    def believability(self, p: int, texts: list[str]) -> np.ndarray:
        if self.judge is None:
            return np.full(len(texts), np.nan)
        task, opener = self.prompts.tasks[p], self.prompts.chats[p][-1]["content"]
        records = [task.record([Utterance(1, opener), Utterance(0, t or "...")], 0) for t in texts]
        return np.array([j.scores[0].believability if j.ok else np.nan for j in self.judge(records)], dtype=float)

    def __call__(self, p: int, raw: list[str]) -> dict[str, np.ndarray]:
        texts = [clean_utterance(r) for r in raw]
        tokens = [self.lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        lp, n = [], []
        with torch.no_grad():
            for s in range(0, len(raw), 16):
                total, count = self.prompts.cache.reply_logprobs([p] * len(raw[s : s + 16]), raw[s : s + 16])
                lp.append(total)
                n.append(count)
        return {
            **{name: np.asarray(self.scorers(b, p, texts), dtype=float) for name, b in REWARDS.items()},
            **{name: np.asarray(self.scorers(b, p, texts), dtype=float) * (1 if b.direction == "up" else -1)
               for name, b in self.own.items()},
            "fluency": (torch.cat(lp) / torch.cat(n)).numpy().astype(float),
            "degenerate": np.array([float(st.is_degenerate(t, k)) for t, k in zip(texts, tokens, strict=True)]),
            "in_character": np.array([float(not st.out_of_character(t, *self.prompts.names[p])) for t in texts]),
            "believability": self.believability(p, texts),
            "texts": texts,
        }


def _generate(lm: FrozenLM, prompts: Prompts, p: int, prefixes, rows: int, position: str, sampling,
              seed: int) -> list[str]:
    if prefixes is None or position == "before_reply":
        return prompts.cache.generate([p] * rows, prefixes, sampling, seed=seed)
    return lm.generate([prompts.chats[p]] * rows, prefixes, sampling, position=position, seed=seed)


def _first_token(lm: FrozenLM, prompts: Prompts, p: int, prefixes, position: str) -> np.ndarray:
    mixed = prefixes is not None and len({x is None for x in prefixes}) == 2
    if mixed:  # rows at the null point have no prefix, so no common length with the others: a call of their own
        steered = [i for i, x in enumerate(prefixes) if x is not None]
        out = np.repeat(_first_token(lm, prompts, p, None, "start"), len(prefixes), axis=0)
        out[steered] = _first_token(lm, prompts, p, [prefixes[i] for i in steered], position)
        return out
    if prefixes is None or position == "before_reply":
        index = [p] * (1 if prefixes is None else len(prefixes))
        return prompts.cache.next_token_logprobs(index, prefixes).numpy()
    return lm.next_token_logprobs([prompts.chats[p]] * len(prefixes), prefixes, position=position).numpy()


def _stack(parts: list[dict], key: str) -> np.ndarray:
    return np.stack([part[key] for part in parts])


def baseline(lm: FrozenLM, prompts: Prompts, scorer: Scorer, cfg: GateConfig, seed: int) -> dict:
    """Unsteered samples per prompt: the reference levels, the noise row (pseudo-actions) and the first token's
    distribution without a prefix (``first_token``, kept out of the JSON)."""
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens)
    parts = [scorer(p, _generate(lm, prompts, p, None, cfg.baseline, "start", sampling,
                                 derive_seed(seed, "baseline", p))) for p in range(len(prompts))]
    summary = {
        "rewards": {},
        "fluency": float(_stack(parts, "fluency").mean()),
        "degenerate": float(_stack(parts, "degenerate").mean()),
        "in_character": float(_stack(parts, "in_character").mean()),
        "believability": float(np.nanmean(_stack(parts, "believability"))) if cfg.believability else float("nan"),
        "distinct": st.distinct_share([part["texts"] for part in parts]),
        "examples": [part["texts"][:2] for part in parts],
    }
    for name in REWARDS:
        values = _stack(parts, name)
        noise = st.pseudo_actions(values, SAMPLES)
        summary["rewards"][name] = {"mean": float(values.mean()), "std": float(values.std()),
                                    "corr": st.same_action_correlation(noise), "anova": st.anova(noise)}
    summary["per_prompt"] = {name: _stack(parts, name).mean(axis=1).tolist() for name in (*REWARDS, *scorer.own)}
    logps = np.stack([_first_token(lm, prompts, p, None, "start")[0] for p in range(len(prompts))])
    return {"summary": summary, "first_token": logps}


def measure(lm: FrozenLM, projection: UpProjection, prompts: Prompts, scorer: Scorer, base: dict, cfg: GateConfig,
            seed: int, label: str, held_out: bool, progress=print) -> dict:
    """Every measurement of one action space against ``base`` (``baseline``), with the gate's verdict and its
    reasons (``gate``, ``gate_reasons``). ``label`` names the action space in the seeds of its samples;
    ``held_out``: the prompts' tasks are not the ones the action space was made on (else the gate fails)."""
    started = time.time()
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens)
    position, d = projection.cfg.position, projection.cfg.planner_dim  # the RL action space (a null point included)
    g = torch.Generator().manual_seed(derive_seed(seed, "actions", d))
    actions = torch.rand(cfg.actions, d, generator=g) * 2 - 1
    with torch.no_grad():  # an action at the null point plays no prefix at all, as in a dialogue
        prefixes = [None if skip else p for p, skip in zip(projection(actions), projection.unsteered(actions),
                                                            strict=True)]
    parts, kl, jsd = [], [], []
    for p in range(len(prompts)):
        rows = [prefixes[k] for k in range(cfg.actions) for _ in range(SAMPLES)]
        parts.append(scorer(p, _generate(lm, prompts, p, rows, len(rows), position, sampling,
                                         derive_seed(seed, label, "main", p))))
        logps = _first_token(lm, prompts, p, prefixes, position)
        kl.append(float(st.kl(logps, base["first_token"][p][None]).mean()))
        jsd.append(st.mean_pairwise_js(logps))
        progress(f"  [{label}] prompt {p + 1}/{len(prompts)} done ({(time.time() - started) / 60:.1f} min)")
    keys = (*REWARDS, *scorer.own, "fluency", "degenerate", "in_character", "believability")
    table = {key: _stack(parts, key).reshape(len(prompts), cfg.actions, SAMPLES) for key in keys}
    chosen = {r: st.best_actions(table[r]) for r in REWARDS}
    fresh_parts = [_sample_again(lm, prompts, scorer, p, prefixes, {int(chosen[r][p]) for r in REWARDS}, position,
                                 sampling, cfg.fresh, derive_seed(seed, label, "fresh", p))
                   for p in range(len(prompts))]
    rewards = {}
    for r in REWARDS:
        fresh = np.stack([fresh_parts[p][int(chosen[r][p])][r] for p in range(len(prompts))])
        rewards[r] = {
            "mean_shift": float(table[r].mean() - base["summary"]["rewards"][r]["mean"]),
            "corr": {**st.same_action_correlation(table[r]), "p": st.correlation_p_value(table[r])},
            "anova": st.anova(table[r]),
            "best_of_k": st.best_of_k(table[r], fresh),
            "raw": {"samples": table[r].tolist(), "fresh": fresh.tolist(), "chosen": chosen[r].tolist()},
        }
    fresh_fluency = np.concatenate([v["fluency"] for part in fresh_parts for v in part.values()])
    fresh_degenerate = np.concatenate([v["degenerate"] for part in fresh_parts for v in part.values()])
    steered_fluency = float(np.concatenate([table["fluency"].ravel(), fresh_fluency]).mean())
    inputs = [layerprefix.split(p)[0] for p in prefixes if p is not None]  # a deep prefix's layer rows are no tokens
    result = {
        "name": label,
        "held_out": held_out,
        "split": "eval" if held_out else "train",
        "scenarios": cfg.scenarios,
        "prompts": len(prompts),
        "actions": cfg.actions,
        "samples": SAMPLES,
        "fresh": cfg.fresh,
        "prefix_norm": float(torch.stack(inputs).norm(dim=-1).mean() / float(projection.token_norm)) if inputs else 0.0,
        "first_token": {"kl": float(np.mean(kl)), "js": float(np.mean(jsd))},
        "rewards": rewards,
        "fluency": {"steered": steered_fluency, "baseline": base["summary"]["fluency"],
                    "cost": base["summary"]["fluency"] - steered_fluency},
        "degenerate": float(np.concatenate([table["degenerate"].ravel(), fresh_degenerate]).mean()),
        "in_character": {"steered": float(table["in_character"].mean()), "baseline": base["summary"]["in_character"]},
        "believability": {"steered": float(np.nanmean(table["believability"])) if cfg.believability
                          else float("nan"), "baseline": base["summary"]["believability"]},
        # As many replies per prompt as the baseline has, so the shares compare.
        "distinct": {"steered": st.distinct_share([part["texts"][: cfg.baseline] for part in parts]),
                     "baseline": base["summary"]["distinct"]},
        "examples": [parts[0]["texts"][SAMPLES * k] for k in range(min(4, cfg.actions))],
        "character_examples": [t for part in parts for t, ok in zip(part["texts"], part["in_character"], strict=True)
                               if not ok][:8],
        "minutes": round((time.time() - started) / 60, 1),
    }
    if scorer.own:
        result["behaviours"] = own_scores(lm, prompts, scorer, table, prefixes, position, cfg, seed, label)
        result["effects"] = effects(projection, actions, table, base, (*REWARDS, *scorer.own))
    result["gate"], result["gate_reasons"] = st.gate(result)
    return result


def own_scores(lm: FrozenLM, prompts: Prompts, scorer: Scorer, table: dict, prefixes: list, position: str,
               cfg: GateConfig, seed: int, label: str) -> dict:
    """The gate's reward criteria for each behaviour of a basis on its own scorer: same-action correlation (with its
    permutation p) and the best action per prompt sampled ``fresh`` times again (best-of-K). The fresh samples are
    calls of their own (one per prompt, every behaviour's best action in it), so the gate's other measurements are
    those of a basis without this report."""
    sampling = SamplingConfig(max_new_tokens=cfg.max_new_tokens)
    names = list(scorer.own)
    chosen = {name: st.best_actions(table[name]) for name in names}
    parts = [_sample_again(lm, prompts, scorer, p, prefixes, {int(chosen[name][p]) for name in names}, position,
                           sampling, cfg.fresh, derive_seed(seed, label, "fresh", "own", p))
             for p in range(len(prompts))]
    return {name.removeprefix(OWN): {
        "corr": {**st.same_action_correlation(table[name]), "p": st.correlation_p_value(table[name])},
        "best_of_k": st.best_of_k(table[name], np.stack([parts[p][int(chosen[name][p])][name]
                                                         for p in range(len(prompts))])),
    } for name in names}


def _sample_again(lm: FrozenLM, prompts: Prompts, scorer: Scorer, p: int, prefixes: list, picked: set[int],
                  position: str, sampling, fresh: int, seed: int) -> dict[int, dict[str, np.ndarray]]:
    """Each picked action of prompt ``p`` sampled ``fresh`` times more, all in one call: its scores by action."""
    order = sorted(picked)
    rows = [prefixes[k] for k in order for _ in range(fresh)]
    scores = scorer(p, _generate(lm, prompts, p, rows, len(rows), position, sampling, seed))
    return {k: {key: value[i * fresh:(i + 1) * fresh] for key, value in scores.items() if key != "texts"}
            for i, k in enumerate(order)}


def effects(projection: UpProjection, actions: torch.Tensor, table: dict, base: dict, scores: Sequence[str]) -> dict:
    """Each behaviour's prefix against the unsteered model, on every score: the random actions grouped by the
    behaviour the sharp softmax picks (its largest logit; ``none``: the null point), and per group and score the
    mean over prompts of (the group's mean on the prompt - the unsteered mean on it), with its SE over prompts. The
    intended score should move, the others little. Where the table has them, each group's log-prob ``cost`` (the
    unsteered fluency less the group's) and ``degenerate`` share too: which prefix costs the fluency the gate asks."""
    names = [b.removeprefix(OWN) for b in scores if b.startswith(OWN)]
    names += ["none"] * int(projection.cfg.null_action)
    picks = actions.argmax(dim=1).numpy()
    out = {}
    for k, name in enumerate(names):
        group = np.flatnonzero(picks == k)
        if not len(group):
            continue
        shifts = {}
        for score in scores:
            diff = table[score][:, group].mean(axis=(1, 2)) - np.asarray(base["summary"]["per_prompt"][score])
            shifts[score] = {"mean": float(diff.mean()),
                             "se": float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")}
        out[name] = {"actions": int(len(group)), "shift": shifts}
        if "fluency" in table:
            out[name]["cost"] = float(base["summary"]["fluency"] - table["fluency"][:, group].mean())
        if "degenerate" in table:
            out[name]["degenerate"] = float(table["degenerate"][:, group].mean())
    return out


def verdict(result: dict) -> str:
    """The verdict as printed: one line for the outcome, one per criterion; then, for a behaviour basis, whether
    each behaviour's own scorer meets the reward criteria (``st.behaviour_checks``)."""
    checks = st.behaviour_checks(result)
    return "\n".join([f"gate: {'PASS' if result['gate'] else 'fail'} ({result['name']})",
                      *(f"  {line}" for line in result["gate_reasons"]),
                      *(["each behaviour on its own scorer:"] if checks else []),
                      *(f"  {line}" for _, line in checks.values())])
