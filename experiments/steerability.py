"""The steerability gate over the action-space presets: the tables and picture of docs/results/steerability.md.

The protocol, the statistics and the verdict are the library's (``dat.eval.gate``, ``dat.action.steerability``);
``dat gate prefix=<preset>`` runs them on one action space. This driver runs them over every preset
(``dat_pipeline/conf/prefix/<name>.yaml``, optionally with overrides: ``<preset>:key=value,...``) on one set of
held-out prompts and one unsteered baseline, prepares each action space as training does (stage 1: a cached or
prebuilt basis, or one made now on the bundled *train* scenarios), and writes ``results/steerability*.json`` and
``.md``. Finished presets are cached under ``<model artefacts>/steerability/<split>/`` so an interrupted run
resumes per preset.

    python experiments/steerability.py                                          # every preset, eval split
    python experiments/steerability.py --configs behaviours --seed 1            # one preset, a second seed
    python experiments/steerability.py --configs experimental/pca_reply:norm=8,action_dim=8   # a variant
    python experiments/steerability.py --gates outputs/gate/seed=0 outputs/gate/seed=1        # gather dat gate runs
"""

from __future__ import annotations

from dat_pipeline import CONF, measuring

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from dat.action import steerability as st
from dat.action.behaviours import BehaviourConfig
from dat.action.experimental.selfclone import SelfCloneConfig
from dat.action.projection import PrefixConfig, UpProjection
from dat.config import GateRunConfig, register_configs, to_config
from dat.eval import gate as protocol
from dat.eval.gate_plot import plot_all
from dat.judges.embedding import EmbeddingJudge
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig, artefact_folder
from dat.stage1 import prepare_projection
from envs.scenarios import load_scenarios

PRESETS = CONF / "prefix"
CONFIGS = ("pca", "pca_start", "behaviours", "behaviours_goal_hint", "behaviours_goal_hint_deep", "behaviours_angry",
           *(f"experimental/{name}" for name in ("pca_reply", "learned", "learned_target", "anchors", "behaviours_goal",
                                                 "behaviours_hint", "behaviours_hint_goal")))
REWARDS = tuple(protocol.REWARDS)
FIELDS = {"": PrefixConfig, "behaviours": BehaviourConfig, "selfclone": SelfCloneConfig}


def preset_name(name: str) -> str:
    """``<preset>`` or ``<preset>:key=value,...``: prefix fields overridden (``experimental/pca_reply:norm=4``), or
    how the action space is made (``behaviours:behaviours.beta=0.5,behaviours.name=beta05``, ``selfclone.<field>``)."""
    base, _, overrides = name.partition(":")
    if base not in CONFIGS:
        raise argparse.ArgumentTypeError(f"{base!r} is not one of the presets {', '.join(CONFIGS)}.")
    for item in filter(None, overrides.split(",")):
        group, _, field_name = item.partition("=")[0].rpartition(".")
        if "=" not in item or group not in FIELDS or field_name not in FIELDS[group].__dataclass_fields__:
            raise argparse.ArgumentTypeError(
                f"{item!r} in {name!r} is not key=value with key a prefix field "
                f"({', '.join(PrefixConfig.__dataclass_fields__)}), behaviours.<field> or selfclone.<field>.")
    return name


def preset_config(name: str, args) -> GateRunConfig:
    """The preset (and its overrides) composed by Hydra as ``dat gate`` composes it."""
    base, _, overrides = name.partition(":")
    items = [item if item.partition("=")[0].rpartition(".")[0] else f"prefix.{item}"
             for item in filter(None, overrides.split(","))]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("gate", overrides=[f"prefix={base}", *items, f"model.name={args.model}",
                                         f"model.dtype={args.dtype}", f"seed={args.seed}", "logger=none",
                                         f"gate.prompts={args.prompts}", f"gate.actions={args.actions}",
                                         f"gate.fresh={args.fresh}", f"gate.baseline={args.baseline}",
                                         f"gate.max_new_tokens={args.max_new_tokens}",
                                         f"gate.believability={args.believability}",
                                         f"gate.scenarios=bundled:{args.split}"])
    return to_config(cfg, GateRunConfig)


def run_config(name: str, lm: FrozenLM, prompts: protocol.Prompts, scorer: protocol.Scorer, base: dict,
               args) -> dict:
    """One preset: its action space prepared by stage 1, then measured by the gate's protocol."""
    cfg = preset_config(name, args)
    with tempfile.TemporaryDirectory() as out, torch.enable_grad():  # making a basis needs gradients
        projection = prepare_projection(cfg, lm, load_scenarios("bundled:train"), Path(out))
        record = UpProjection.record_of(Path(out) / "projection")
    result = protocol.measure(lm, projection, prompts, scorer, base, cfg.gate, args.seed, name,
                              held_out=args.split == "eval", progress=lambda line: print(line, flush=True))
    result["prefix"] = asdict(cfg.prefix)
    if cfg.prefix.kind == "behaviours":
        result["behaviours"], result["basis_record"] = asdict(cfg.behaviours), record
    if cfg.prefix.kind == "learned":
        result["selfclone"], result["selfclone_record"] = asdict(cfg.selfclone), record
    return result


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


def gather(folders: list[str], by_folder: bool = False) -> dict:
    """``dat gate`` runs (their ``gate.json``: the gate's result, the unsteered baseline, the action space and the
    gate's settings; a behaviour basis's training record per behaviour: pairs, margins, real positives), keyed by
    seed (one action space at several seeds) or, ``by_folder``, by the run folder's name (several action spaces)."""
    runs = {}
    for folder in folders:
        record = json.loads((Path(folder) / "gate.json").read_text())
        made = UpProjection.record_of(Path(folder) / "projection").get("behaviours")
        key = Path(folder).name if by_folder else str(record["seed"])
        runs[key] = {"folder": str(folder), **{k: record.get(k) for k in (
            "model", "seed", "gate_settings", "prefix", "behaviours", "baseline", "result")},
            **({"basis": [{k: v for k, v in b.items() if k != "layer_norms_x_hidden"} for b in made]} if made else {})}
    return runs


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
    parser.add_argument("--model", default=ModelConfig().name, help="model.name (tiny-random for a smoke test)")
    parser.add_argument("--dtype", default=ModelConfig().dtype, choices=("float32", "bfloat16"),
                        help="model.dtype (a bfloat16 run keeps its own baseline, cached results and JSON file)")
    parser.add_argument("--force", action="store_true", help="re-measure configurations cached from earlier runs")
    parser.add_argument("--out", default=str(measuring.RESULTS))
    parser.add_argument("--tried", nargs="*", default=[],
                        help="earlier variants to list too (cached results of that name)")
    parser.add_argument("--gates", nargs="+", help="dat gate run folders to gather (nothing is measured)")
    parser.add_argument("--name", default="gate_default", help="with --gates: the results file's name")
    parser.add_argument("--by-folder", action="store_true",
                        help="with --gates: key the runs by folder name (several settings at one seed)")
    args = parser.parse_args()
    if args.gates:
        path = Path(args.out) / f"{args.name}.json"
        runs = gather(args.gates, args.by_folder)
        path.write_text(json.dumps({"machine": measuring.machine(), "runs": runs}, indent=2) + "\n")
        print(f"wrote {path}")
        return

    model_cfg = ModelConfig(name=args.model, dtype=args.dtype)
    lm = FrozenLM.load(model_cfg)
    artefacts = artefact_folder(model_cfg)
    work = artefacts / "steerability" / args.split
    work.mkdir(parents=True, exist_ok=True)
    gate_cfg = preset_config(args.configs[0], args).gate
    with torch.no_grad():
        prompts = protocol.Prompts(lm, load_scenarios(gate_cfg.scenarios), gate_cfg, args.seed)
        scorer = protocol.Scorer(lm, prompts, EmbeddingJudge(), believability=args.believability)
        print(f"{len(prompts)} prompts; baseline ...", flush=True)
        base = protocol.baseline(lm, prompts, scorer, gate_cfg, args.seed)
    settings = {k: v for k, v in vars(args).items() if k not in ("configs", "force", "out", "tried", "believability")}
    settings["prompts"] = len(prompts)
    stem = "steerability" + ("" if args.split == "eval" else f"_{args.split}") + (
        "" if args.seed == 0 else f"_seed{args.seed}") + (  # a replication keeps its own baseline and file
        "" if args.dtype == "float32" else f"_{args.dtype}")
    out_path = Path(args.out) / f"{stem}.json"
    results = json.loads(out_path.read_text()) if out_path.is_file() else {}
    results.update({"model": lm.name, "settings": settings, "baseline": base["summary"],
                    "prompts": prompts.describe()})
    results.setdefault("configs", {})
    for name in args.tried:  # variants measured earlier whose preset has since changed; kept for the record
        results.setdefault("tried", {})[name] = json.loads((work / f"{name}.json").read_text())
    for name in args.configs:
        cached = work / (name.replace("/", "__") + ("" if args.seed == 0 else f"@seed{args.seed}")
                         + ("" if args.dtype == "float32" else f"@{args.dtype}") + ".json")
        if cached.is_file() and not args.force:
            res = json.loads(cached.read_text())
        else:
            print(f"configuration {name} ...", flush=True)
            with torch.no_grad():
                res = run_config(name, lm, prompts, scorer, base, args)
            cached.write_text(json.dumps(res, indent=2))
        results["configs"][name] = res
        print(f"{name}: gate {'PASS' if res['gate'] else 'fail'}; " + "; ".join(res["gate_reasons"]), flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps({**results, "machine": measuring.machine()}, indent=2))
        out_path.with_suffix(".md").write_text(markdown(results))
    for picture in plot_all(Path(args.out)):  # the picture of docs/results/steerability.md
        print(f"wrote {picture}", flush=True)


if __name__ == "__main__":
    main()
