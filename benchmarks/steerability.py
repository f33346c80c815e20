"""Steerability benchmark: does the choice of action reproducibly change what the frozen LM says?

For each prefix configuration (``dat_pipeline/conf/prefix/<name>.yaml``), on the first turn of one task per bundled
scenario of a split (held-out ``eval`` for the gate; the chats are built by the env's own rules, the
partner opening): K random actions uniform in [-1, 1]^d (the RL action space) x 2 samples each,
plus unsteered samples. Replies are scored with cheap rewards: VADER sentiment, MiniLM similarity to
the agent's goal, and a keyword/rule hit from the scenario's checks. Also measured: fluency (mean
token log-prob under the unsteered model), degenerate replies, the first reply token's KL to no
prefix and JS between actions. The best action per prompt (chosen on its 2 samples) is re-sampled
to see if its advantage over the average action survives. Statistics: ``dat.action.steerability``.

Learned configurations are self-cloned first on the bundled *train* scenarios
(``dat.action.experimental.selfclone``) and cached under ``<model artefacts>/projections/<name>``. Partial
results are cached under ``<model artefacts>/steerability/<split>/`` so an interrupted run resumes per configuration.

    python benchmarks/steerability.py                                   # all configurations, eval split
    python benchmarks/steerability.py --configs learned_target --clone-only
    python benchmarks/steerability.py --configs pca_reply:norm=8,action_dim=8   # a variant of a preset
"""

from __future__ import annotations

from dat_pipeline import CONF

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import common  # noqa: F401  (CPU settings before torch)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from steerability_plot import plot_all  # noqa: E402
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # noqa: E402

from dat.action import steerability as st  # noqa: E402
from dat.action.basis import ensure_basis  # noqa: E402
from dat.action.behaviours import BehaviourConfig, rule_pattern  # noqa: E402
from dat.action.experimental.selfclone import SelfCloneConfig, ensure_projection  # noqa: E402
from dat.action.projection import PrefixConfig, build_projection  # noqa: E402
from dat.dialogue.openings import behaviour_prompts, opening_chats  # noqa: E402
from dat.dialogue.rules import EnvConfig, clean_utterance  # noqa: E402
from dat.judges.embedding import EmbeddingJudge  # noqa: E402
from dat.judges.local import LocalJudge  # noqa: E402
from dat.lm import layerprefix  # noqa: E402
from dat.lm.frozen import FrozenLM, SamplingConfig  # noqa: E402
from dat.lm.loading import ModelConfig, artefact_folder  # noqa: E402
from dat.lm.promptcache import PromptCache  # noqa: E402
from dat.records import Utterance  # noqa: E402
from dat.seeding import derive_seed  # noqa: E402
from envs.scenarios import load_scenarios  # noqa: E402
from envs.scenarios.schema import render_goal  # noqa: E402

PRESETS = CONF / "prefix"
CONFIGS = ("pca", "pca_start", "behaviours", "behaviours_goal_hint", "behaviours_goal_hint_deep", "behaviours_angry",
           *(f"experimental/{name}" for name in ("pca_reply", "learned", "learned_target", "anchors", "behaviours_goal",
                                                 "behaviours_hint", "behaviours_hint_goal")))
REWARDS = ("sentiment", "goal", "keyword")


def preset_name(name: str) -> str:
    """``<preset>`` or ``<preset>:key=value,...``: prefix fields overridden (``pca_reply:norm=4``), or a
    behaviour basis's settings (``behaviours:behaviours.beta=0.5,behaviours.name=beta05``)."""
    base, _, overrides = name.partition(":")
    if base not in CONFIGS:
        raise argparse.ArgumentTypeError(f"{base!r} is not one of the presets {', '.join(CONFIGS)}.")
    for item in filter(None, overrides.split(",")):
        key = item.partition("=")[0]
        group, _, field_name = key.rpartition(".")
        known = BehaviourConfig.__dataclass_fields__ if group == "behaviours" else PrefixConfig.__dataclass_fields__
        if "=" not in item or group not in ("", "behaviours") or field_name not in known:
            raise argparse.ArgumentTypeError(
                f"{item!r} in {name!r} is not key=value with key a prefix field "
                f"({', '.join(PrefixConfig.__dataclass_fields__)}) or behaviours.<field>.")
    return name


def load_preset(name: str) -> tuple[PrefixConfig, SelfCloneConfig | None, BehaviourConfig | None]:
    """A ``dat_pipeline/conf/prefix`` preset as typed configs (learned presets also carry a ``selfclone`` node,
    behaviour bases a ``behaviours`` node)."""
    base, _, overrides = name.partition(":")
    items = list(filter(None, overrides.split(",")))
    raw = OmegaConf.load(PRESETS / f"{base}.yaml")
    node = {k: v for k, v in raw.get("prefix", raw).items() if k != "defaults"}
    node.update(OmegaConf.from_dotlist([i for i in items if not i.startswith("behaviours.")]))
    prefix = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PrefixConfig), node))
    clone = None
    if "selfclone" in raw:
        clone = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SelfCloneConfig), raw["selfclone"]))
    behaviours = None
    if "behaviours" in raw:
        tuned = OmegaConf.from_dotlist([i.removeprefix("behaviours.") for i in items if i.startswith("behaviours.")])
        behaviours = OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(BehaviourConfig), raw["behaviours"], tuned))
    return prefix, clone, behaviours


def keyword_pattern(task, side: int) -> str:
    """Regex of the side's rule checks (keywords, regexes, an amount for price checks), else goal words."""
    return rule_pattern(task.record([], side), side)


class Prompts:
    """The benchmark's chats (steered agent's first turn), their goals, keyword rules and prompt caches."""

    def __init__(self, lm: FrozenLM, split: str, n: int, max_new_tokens: int, seed: int, embedder):
        tasks, seen = [], set()
        for t in load_scenarios(f"bundled:{split}"):
            if t.scenario.id not in seen:
                seen.add(t.scenario.id)
                tasks.append(t)
        self.tasks = tasks[:n]
        env = EnvConfig(sampling=SamplingConfig(max_new_tokens=max_new_tokens, do_sample=False))
        self.chats = opening_chats(
            lm, self.tasks, env, derive_seed(seed, "openers"), sides=(0,), partner_opens=(True,)
        )
        self.goals = [render_goal(t.scenario.agent_goals[0]) for t in self.tasks]
        self.names = [t.names for t in self.tasks]
        self.patterns = [re.compile(keyword_pattern(t, 0), re.IGNORECASE) for t in self.tasks]
        self.goal_vectors = embedder.embed(self.goals)
        self.cache = PromptCache(lm, self.chats)

    def __len__(self) -> int:
        return len(self.chats)


class Scorer:
    """Cheap rewards and quality measures of raw generations (scored as the env records them: first line)."""

    def __init__(self, lm: FrozenLM, prompts: Prompts, embedder, believability: bool = True):
        self.lm, self.prompts, self.embedder = lm, prompts, embedder
        self.vader = SentimentIntensityAnalyzer()
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
        vectors = self.embedder.embed([t or " " for t in texts])
        tokens = [self.lm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        lp, n = [], []
        with torch.no_grad():
            for s in range(0, len(raw), 16):
                total, count = self.prompts.cache.reply_logprobs([p] * len(raw[s : s + 16]), raw[s : s + 16])
                lp.append(total)
                n.append(count)
        return {
            "sentiment": np.array([self.vader.polarity_scores(t)["compound"] for t in texts]),
            "goal": (vectors @ self.prompts.goal_vectors[p]).numpy().astype(float),
            "keyword": np.array([float(bool(self.prompts.patterns[p].search(t))) for t in texts]),
            "fluency": (torch.cat(lp) / torch.cat(n)).numpy().astype(float),
            "degenerate": np.array(
                [float(st.is_degenerate(t, k)) for t, k in zip(texts, tokens, strict=True)]
            ),
            "in_character": np.array([float(not st.out_of_character(t, *self.prompts.names[p])) for t in texts]),
            "believability": self.believability(p, texts),
            "texts": texts,
        }


def generate(
    lm, prompts: Prompts, p: int, prefixes, rows: int, position: str, sampling, seed: int
) -> list[str]:
    if prefixes is None or position == "before_reply":
        return prompts.cache.generate([p] * rows, prefixes, sampling, seed=seed)
    return lm.generate([prompts.chats[p]] * rows, prefixes, sampling, position=position, seed=seed)


def first_token(lm, prompts: Prompts, p: int, prefixes, position: str) -> np.ndarray:
    if prefixes is None or position == "before_reply":
        index = [p] * (1 if prefixes is None else len(prefixes))
        return prompts.cache.next_token_logprobs(index, prefixes).numpy()
    return lm.next_token_logprobs([prompts.chats[p]] * len(prefixes), prefixes, position=position).numpy()


def stack(parts: list[dict], key: str) -> np.ndarray:
    return np.stack([part[key] for part in parts])


def baseline(lm, prompts: Prompts, scorer: Scorer, args, sampling) -> dict:
    """Unsteered samples per prompt: reference levels, and the noise row (pseudo-actions)."""
    parts = [
        scorer(
            p,
            generate(
                lm, prompts, p, None, args.baseline, "start", sampling, derive_seed(args.seed, "baseline", p)
            ),
        )
        for p in range(len(prompts))
    ]
    logps = np.stack([first_token(lm, prompts, p, None, "start")[0] for p in range(len(prompts))])
    out = {
        "rewards": {},
        "fluency": float(stack(parts, "fluency").mean()),
        "degenerate": float(stack(parts, "degenerate").mean()),
        "in_character": float(stack(parts, "in_character").mean()),
        "believability": float(np.nanmean(stack(parts, "believability"))),
        "distinct": st.distinct_share([part["texts"] for part in parts]),
        "examples": [part["texts"][:2] for part in parts],
    }
    for name in REWARDS:
        values = stack(parts, name)
        noise = st.pseudo_actions(values, 2)
        out["rewards"][name] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "corr": st.same_action_correlation(noise),
            "anova": st.anova(noise),
        }
    return {"summary": out, "first_token": logps}


def run_config(
    name: str, lm, prompts: Prompts, scorer: Scorer, base: dict, args, sampling, artefacts
) -> dict:
    """All measurements of one prefix configuration (see the module docstring)."""
    started = time.time()
    prefix_cfg, clone_cfg, behaviour_cfg = load_preset(name)
    embedding = lm.model.get_input_embeddings().weight
    if prefix_cfg.kind == "behaviours":
        projection = ensure_basis(lm, lambda: basis_prompts(lm, args), prefix_cfg, behaviour_cfg, artefacts,
                                  embedder=scorer.embedder)
    elif prefix_cfg.kind == "learned":
        projection = ensure_projection(
            lm,
            lambda: train_chats(lm, args, artefacts),
            prefix_cfg,
            clone_overrides(clone_cfg, args),
            artefacts,
        )
    else:
        projection = build_projection(embedding, prefix_cfg, artefacts, lm.tokenizer)
    position = prefix_cfg.position
    g = torch.Generator().manual_seed(derive_seed(args.seed, "actions", prefix_cfg.action_dim))
    actions = torch.rand(args.actions, prefix_cfg.action_dim, generator=g) * 2 - 1
    with torch.no_grad():
        prefixes = list(projection(actions))
    token_norm = float(projection.token_norm)
    parts, kl, jsd = [], [], []
    for p in range(len(prompts)):
        rows = [prefixes[k] for k in range(args.actions) for _ in range(2)]
        raw = generate(
            lm, prompts, p, rows, len(rows), position, sampling, derive_seed(args.seed, name, "main", p)
        )
        parts.append(scorer(p, raw))
        logps = first_token(lm, prompts, p, prefixes, position)
        kl.append(float(st.kl(logps, base["first_token"][p][None]).mean()))
        jsd.append(st.mean_pairwise_js(logps))
        print(
            f"  [{name}] prompt {p + 1}/{len(prompts)} done ({(time.time() - started) / 60:.1f} min)",
            flush=True,
        )
    table = {
        key: stack(parts, key).reshape(len(prompts), args.actions, 2)
        for key in (*REWARDS, "fluency", "degenerate", "in_character", "believability")
    }
    chosen = {r: st.best_actions(table[r]) for r in REWARDS}
    fresh_parts = []
    for p in range(len(prompts)):  # re-sample every selected action of this prompt in one call
        picked = sorted({int(chosen[r][p]) for r in REWARDS})
        rows = [prefixes[k] for k in picked for _ in range(args.fresh)]
        raw = generate(
            lm, prompts, p, rows, len(rows), position, sampling, derive_seed(args.seed, name, "fresh", p)
        )
        scores = scorer(p, raw)
        fresh_parts.append(
            {
                k: {
                    key: scores[key][i * args.fresh : (i + 1) * args.fresh]
                    for key in (*REWARDS, "fluency", "degenerate")
                }
                for i, k in enumerate(picked)
            }
        )
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
    result = {
        "name": name,
        "prefix": asdict(prefix_cfg),
        "selfclone": asdict(clone_cfg) if clone_cfg else None,
        "split": args.split,
        "prompts": len(prompts),
        "actions": args.actions,
        "samples": 2,
        "fresh": args.fresh,
        "prefix_norm": float(torch.stack([layerprefix.split(p)[0] for p in prefixes]).norm(dim=-1).mean()
                             / token_norm),  # input embeddings (a deep prefix's layer rows are not tokens)
        "first_token": {"kl": float(np.mean(kl)), "js": float(np.mean(jsd))},
        "rewards": rewards,
        "fluency": {
            "steered": steered_fluency,
            "baseline": base["summary"]["fluency"],
            "cost": base["summary"]["fluency"] - steered_fluency,
        },
        "degenerate": float(np.concatenate([table["degenerate"].ravel(), fresh_degenerate]).mean()),
        "in_character": {"steered": float(table["in_character"].mean()),
                         "baseline": base["summary"]["in_character"]},
        "believability": {"steered": float(np.nanmean(table["believability"])),
                          "baseline": base["summary"].get("believability", float("nan"))},
        # Same number of replies per prompt as the baseline, so the shares compare.
        "distinct": {"steered": st.distinct_share([part["texts"][: args.baseline] for part in parts]),
                     "baseline": base["summary"]["distinct"]},
        "examples": [parts[0]["texts"][2 * k] for k in range(min(4, args.actions))],
        "minutes": round((time.time() - started) / 60, 1),
    }
    if prefix_cfg.kind == "behaviours":
        result["behaviours"] = asdict(behaviour_cfg)
        result["basis_record"] = json.loads(
            (artefacts / "behaviours" / behaviour_cfg.name / "projection.json").read_text())["record"]
        result["character_examples"] = [t for part in parts for t, ok in zip(part["texts"], part["in_character"],
                                                                              strict=True) if not ok][:8]
    if prefix_cfg.kind == "learned":
        result["selfclone_record"] = json.loads(
            (artefacts / "projections" / clone_cfg.name / "projection.json").read_text()
        )["record"]
    result["gate"], result["gate_reasons"] = st.gate(result)
    return result


def clone_overrides(cfg: SelfCloneConfig, args) -> SelfCloneConfig:
    cfg = replace(cfg, sampling=replace(cfg.sampling, max_new_tokens=args.max_new_tokens))
    if args.clone_steps is not None:
        cfg = replace(cfg, steps=args.clone_steps)
    if args.clone_minutes is not None:
        cfg = replace(cfg, time_limit_min=args.clone_minutes)
    return cfg


def basis_prompts(lm, args) -> tuple[list, list]:
    """The train prompts a behaviour basis is made on (one task per bundled train scenario)."""
    env = EnvConfig(sampling=SamplingConfig(max_new_tokens=args.max_new_tokens))
    return behaviour_prompts(lm, load_scenarios("bundled:train"), env, derive_seed(0, "behaviour-prompts"))


def train_chats(lm, args, artefacts: Path) -> list:
    """First-turn chats of every bundled train task, both sides, both openings (cached on disk).

    The partner's opening lines cost a few minutes of generation, so they are kept in
    ``<model artefacts>/steerability/train_chats_<seed>_<tokens>.json`` and reused by every run.
    """
    path = artefacts / "steerability" / f"train_chats_{args.seed}_{args.max_new_tokens}.json"
    if path.is_file():
        return json.loads(path.read_text())
    env = EnvConfig(sampling=SamplingConfig(max_new_tokens=args.max_new_tokens))
    chats = opening_chats(lm, load_scenarios("bundled:train"), env, derive_seed(args.seed, "train"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chats, indent=1))
    return chats


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f} %"


def _points(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.2f}"


def markdown(results: dict) -> str:
    """The table of docs/results/steerability.md: one summary row per configuration, then the per-reward statistics."""
    base = results["baseline"]
    lines = [
        f"Held-out split: `{results['settings']['split']}` ({results['settings']['prompts']} prompts), "
        f"K = {results['settings']['actions']} random actions x 2 samples, "
        f"{results['settings']['fresh']} fresh "
        f"samples per selected action, {results['settings']['max_new_tokens']} new tokens, model "
        f"`{results['model']}` in {results['settings'].get('dtype', 'float32')}. Gate: correlation >= "
        f"{st.MIN_CORRELATION} (any reward), best-of-K >= "
        f"{st.MIN_BEST_OF_K_Z} SE (any reward), degenerate <= {100 * st.MAX_DEGENERATE:.0f} %, "
        "log-prob cost <= "
        f"{st.MAX_LOGPROB_COST} nats/token, in character at most {100 * st.MAX_CHARACTER_DROP:.0f} points below "
        f"unsteered, distinct replies at most {st.MAX_DISTINCT_DROP} below, local-judge believability (0..10) at "
        f"most {st.MAX_BELIEVABILITY_DROP} below (rows without them predate the check and were not re-measured).",
        "",
        "| configuration | position | prefix norm (x token) | first-token KL | pairwise JS | "
        "corr sentiment | "
        "corr goal | corr keyword | best-of-K z (sent / goal / kw) | log-prob cost | degenerate | in character | "
        "believability | distinct | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    noise = base["rewards"]
    lines.append(
        "| no prefix (noise: pseudo-actions) | - | 0 | 0 | 0 | "
        + " | ".join(f"{noise[r]['corr']['corr']:+.2f}" for r in REWARDS)
        + f" | - | 0 | {100 * base['degenerate']:.1f} % | {_share(base.get('in_character'))} | "
        f"{_points(base.get('believability'))} | {base.get('distinct', float('nan')):.2f} | - |"
    )
    for name, res in {**results["configs"], **results.get("tried", {})}.items():
        rw = res["rewards"]
        character = _share(res.get("in_character", {}).get("steered"))
        distinct = f"{res['distinct']['steered']:.2f}" if "distinct" in res else "-"
        believable = _points(res.get("believability", {}).get("steered"))
        lines.append(
            f"| {name} | {res['prefix']['position']} | {res['prefix_norm']:.1f} | "
            f"{res['first_token']['kl']:.3f} | "
            f"{res['first_token']['js']:.3f} | "
            + " | ".join(f"{rw[r]['corr']['corr']:+.2f} ± {rw[r]['corr']['se']:.2f}" for r in REWARDS)
            + " | "
            + " / ".join(f"{rw[r]['best_of_k']['z']:+.1f}" for r in REWARDS)
            + f" | {res['fluency']['cost']:+.2f} | {100 * res['degenerate']:.1f} % | {character} | "
            f"{believable} | {distinct} | "
            f"{'**pass**' if res['gate'] else 'fail'} |"
        )
    lines += [
        "",
        "| configuration | reward | mean shift vs unsteered | between-action std | within-action std | F | "
        "best-of-K advantage (± SE) | correlation permutation p |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res in {**results["configs"], **results.get("tried", {})}.items():
        for r in REWARDS:
            s = res["rewards"][r]
            lines.append(
                f"| {name} | {r} | {s['mean_shift']:+.3f} | {s['anova']['between_std']:.3f} | "
                f"{s['anova']['within_std']:.3f} | {s['anova']['F']:.2f} | "
                f"{s['best_of_k']['advantage']:+.3f} ± {s['best_of_k']['se']:.3f} | "
                f"{s['corr'].get('p', float('nan')):.3f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), type=preset_name,
                        help="presets of dat_pipeline/conf/prefix, each optionally with overrides: "
                             "experimental/pca_reply:norm=4,action_dim=8")
    parser.add_argument("--split", default="eval", choices=("train", "eval"))
    parser.add_argument("--prompts", type=int, default=8, help="at most this many scenarios (one task each)")
    parser.add_argument("--actions", type=int, default=16, help="K random actions")
    parser.add_argument("--fresh", type=int, default=8, help="fresh samples per selected action")
    parser.add_argument("--baseline", type=int, default=16, help="unsteered samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--believability", action=argparse.BooleanOptionalAction, default=True,
                        help="score every reply's believability with the local judge (about 1 s per reply here)")
    parser.add_argument(
        "--model", default=ModelConfig().name, help="model.name (tiny-random for a smoke test)"
    )
    parser.add_argument("--dtype", default=ModelConfig().dtype, choices=("float32", "bfloat16"),
                        help="model.dtype (a bfloat16 run keeps its own baseline, cached results and JSON file)")
    parser.add_argument("--clone-steps", type=int, default=None, help="override selfclone.steps")
    parser.add_argument("--clone-minutes", type=float, default=None, help="stop self-cloning after this long")
    parser.add_argument(
        "--clone-only", action="store_true", help="train the learned projections, measure nothing"
    )
    parser.add_argument(
        "--force", action="store_true", help="re-measure configurations cached from earlier runs"
    )
    parser.add_argument("--out", default=str(common.RESULTS))
    parser.add_argument(
        "--tried", nargs="*", default=[], help="earlier variants to list too (cached results of that name)"
    )
    args = parser.parse_args()

    model_cfg = ModelConfig(name=args.model, dtype=args.dtype)
    lm = FrozenLM.load(model_cfg)
    artefacts = artefact_folder(model_cfg)
    if args.clone_only:
        for name in args.configs:
            prefix_cfg, clone_cfg, _ = load_preset(name)
            if clone_cfg is not None:
                ensure_projection(
                    lm,
                    lambda: train_chats(lm, args, artefacts),
                    prefix_cfg,
                    clone_overrides(clone_cfg, args),
                    artefacts,
                )
        return
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens)  # the env's decoding, shorter replies
    embedder = EmbeddingJudge()
    work = artefacts / "steerability" / args.split
    work.mkdir(parents=True, exist_ok=True)
    prompts = Prompts(lm, args.split, args.prompts, args.max_new_tokens, args.seed, embedder)
    scorer = Scorer(lm, prompts, embedder, believability=args.believability)
    print(f"{len(prompts)} prompts; baseline ...", flush=True)
    base = baseline(lm, prompts, scorer, args, sampling)
    settings = {k: v for k, v in vars(args).items()
                if k not in ("configs", "force", "out", "clone_only", "tried", "believability")}
    settings["prompts"] = len(prompts)
    stem = "steerability" + ("" if args.split == "eval" else f"_{args.split}") + (
        "" if args.seed == 0 else f"_seed{args.seed}") + (  # a replication keeps its own baseline and file
        "" if args.dtype == "float32" else f"_{args.dtype}")
    out_path = Path(args.out) / f"{stem}.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results.update(
        {
            "model": lm.name,
            "settings": settings,
            "baseline": base["summary"],
            "prompts": [
                {"task": t.id, "goal": g, "keyword": pat.pattern, "opening": c[-1]["content"]}
                for t, g, pat, c in zip(
                    prompts.tasks, prompts.goals, prompts.patterns, prompts.chats, strict=True
                )
            ],
        }
    )
    results.setdefault("configs", {})
    for name in args.tried:  # variants measured earlier whose preset has since changed; kept for the record
        results.setdefault("tried", {})[name] = json.loads((work / f"{name}.json").read_text())
    for name in args.configs:
        cached = work / (name + ("" if args.seed == 0 else f"@seed{args.seed}")
                         + ("" if args.dtype == "float32" else f"@{args.dtype}") + ".json")
        if cached.is_file() and not args.force:
            res = json.loads(cached.read_text())
        else:
            print(f"configuration {name} ...", flush=True)
            res = run_config(name, lm, prompts, scorer, base, args, sampling, artefacts)
            cached.write_text(json.dumps(res, indent=2))
        results["configs"][name] = res
        print(
            f"{name}: gate {'PASS' if res['gate'] else 'fail'}; " + "; ".join(res["gate_reasons"]), flush=True
        )
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({**results, "machine": common.machine()}, indent=2))
        out_path.with_suffix(".md").write_text(markdown(results))
    for picture in plot_all(Path(args.out)):  # the picture of docs/results/steerability.md
        print(f"wrote {picture}", flush=True)


if __name__ == "__main__":
    main()
