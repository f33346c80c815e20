"""Regenerate the result sections of the docs and the README's summary table from benchmarks/results/.

Each section lives between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in README.md or in a
page under docs/ (the study pages in docs/results/, docs/performance.md): every file that holds a marker
is rewritten, and a file whose sections come out unchanged is left alone. Sections of other names belong to
the benchmark that writes them (``results:collection`` in docs/datasets.md: benchmarks/collection.py). A
section whose result file is missing says so instead of keeping stale numbers, and a figure of the README's
summary that no result file holds reads "see page".

    python experiments/update_docs.py               # every section
    python experiments/update_docs.py throughput    # only the named ones
"""

from __future__ import annotations

from dat_pipeline.measuring import RESULTS

import json
import re
from pathlib import Path

from dat.action import steerability as st

ROOT = Path(__file__).resolve().parents[1]


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def machine_line(data: dict) -> str:
    m = data.get("machine", {})
    load = m.get("load_average_1m")
    busy = f", 1-min load average {load:.1f} during the run" if isinstance(load, int | float) else ""
    where = f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')}"
    return f"_{where}, {m.get('date', '')}{busy}._"


def fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def interval(entry: dict) -> str:
    return f"{fmt(entry['mean'])} [{fmt(entry['low'])}, {fmt(entry['high'])}]"


def delta(entry: dict) -> str:
    d = entry.get("diff")
    if not d:
        return "—"
    p = d["p_value"]
    ptext = "p<0.001" if p is not None and p < 0.001 else f"p={fmt(p, 3)}"
    return f"{d['mean_diff']:+.3f} [{fmt(d['ci_low'], 3)}, {fmt(d['ci_high'], 3)}] ({ptext})"


def steerability() -> str:
    md = RESULTS / "steerability.md"
    if not md.is_file():
        return "_Not measured yet: run `python experiments/steerability.py`._"
    return md.read_text().strip()


def runs_table(name: str, dims: tuple[str, ...] = ("reward",)) -> str:
    data = load(name)
    if data is None:
        return f"_Not measured yet (benchmarks/results/{name}.json)._"
    lines = [data.get("note", ""), ""] if data.get("note") else []
    header = "| seed | condition | " + " | ".join(f"{d} mean [95% CI]" for d in dims) + " | " + \
        " | ".join(f"Δ {d} vs unsteered [95% CI] (p)" for d in dims) + " |"
    lines += [header, "|" + " --- |" * (2 + 2 * len(dims))]
    for run in sorted(data["runs"], key=lambda r: r["seed"] or 0):
        for condition, per_dim in run["results"].items():
            cells = [interval(per_dim[d]) if d in per_dim else "—" for d in dims]
            deltas = [delta(per_dim[d]) if d in per_dim else "—" for d in dims]
            lines.append(f"| {run['seed']} | {condition} | " + " | ".join(cells + deltas) + " |")
    runs = sorted(data["runs"], key=lambda r: r["seed"] or 0)
    meta = runs[0]["metadata"] if runs else {}
    if meta:
        def setting(key):  # a setting the seeds differ in (e.g. each seed's best constant) is given per seed
            values = [r["metadata"].get(key) for r in runs]
            return values[0] if len(set(map(str, values))) == 1 else "; ".join(
                f"seed {r['seed']}: {v}" for r, v in zip(runs, values, strict=True))
        lines += ["", "Setup: " + "; ".join(f"{k}: {setting(k)}" for k in meta if k not in ("round", "seed")) + "."]
    return "\n".join(lines)


def versus_table(name: str) -> str:
    """Per seed, the planner against the strongest baseline and against each (``summarize_runs.py``)."""
    data = load(name)
    if data is None or not all("policy_vs" in r for r in data["runs"]):
        return ""
    runs = sorted(data["runs"], key=lambda r: r["seed"] or 0)
    baselines = list(runs[0]["policy_vs"])
    lines = ["| seed | strongest baseline | " + " | ".join(f"policy − {b}" for b in baselines) + " |",
             "|" + " --- |" * (2 + len(baselines))]
    for r in runs:
        cells = [diff_text(r["policy_vs"][b]) + f" (p = {r['policy_vs'][b]['p_value']:.2f})" for b in baselines]
        lines.append(f"| {r['seed']} | {r['versus']['control']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def planner_runs(name: str) -> str:
    """A planner study's runs (``summarize_runs.py``): the planner against each baseline per seed, then every
    condition's reward, held-out rule reward, restated-goal and in-character shares."""
    return versus_table(name) + "\n\n" + runs_table(name, ("reward", "reward@rule", "restates_goal", "in_character"))


def held_out_table(name: str) -> str:
    """Per seed and condition, the training judge's reward and each held-out judge's on the same evaluate.py
    episodes (``summarize_runs.py --held-out``), each with its difference to the unsteered model."""
    data = load(name)
    runs = sorted((r for r in (data or {}).get("runs", []) if "held_out" in r), key=lambda r: r["seed"] or 0)
    if not runs:
        return ""
    judges = list(next(iter(runs[0]["held_out"]["results"].values())))
    names = ["reward (training judge)" if j == "reward" else j for j in judges]
    lines = ["Each planner's export evaluated again with `python evaluate.py policy=<run>/export "
             "'held_out_judges=[rule,local]'` (other episodes than the training-time evaluation: "
             f"{runs[0]['held_out']['episodes']}); every judge scores the same episodes, and each cell is the mean, "
             "then the difference to the unsteered model with its 95 % interval.", "",
             "| seed | condition | " + " | ".join(names) + " |", "|" + " --- |" * (2 + len(judges))]
    for r in runs:
        for condition, per_judge in r["held_out"]["results"].items():
            cells = [f"{fmt(per_judge[j]['mean'])}" + ("" if condition == "unsteered" or not per_judge[j].get("diff")
                                                     else f" ({diff_text(per_judge[j]['diff'])})")
                     if j in per_judge else "—" for j in judges]
            lines.append(f"| {r['seed']} | {condition} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def choices_table(name: str) -> str:
    """Which behaviour each seed's planner picks (``experiments/planner_choices.py``): on the training tasks against
    each task's best behaviour (the headroom's oracle), and on the held-out tasks turn by turn."""
    data = load(name)
    if not data or not data.get("runs"):
        return f"_Not measured yet (benchmarks/results/{name}.json from experiments/planner_choices.py)._"
    runs = sorted(data["runs"], key=lambda r: r["seed"] or 0)
    lines = [f"Oracle: each training task's best behaviour in the headroom section \"{data['headroom']}\" "
             f"({data['judge']} judge); the planner's pick is its largest logit on the task's first states.", "",
             f"| seed | training tasks where the planner picks the oracle's behaviour | where the headroom's best "
             f"constant ({runs[0]['best_constant']}) does | the planner's picks (training tasks) | its held-out turns, "
             f"by behaviour | held-out tasks where it mostly plays other than {runs[0]['best_constant']} |",
             "|" + " --- |" * 6]
    for r in runs:
        t, h = r["training"], r["held_out"]
        picks = ", ".join(f"{k} {v}" for k, v in sorted(t["picks"].items(), key=lambda kv: -kv[1]))
        shares = ", ".join(f"{k} {v:.0%}" for k, v in h["turn_shares"].items())
        lines.append(f"| {r['seed']} | {t['agrees_with_oracle']:.0%} | {t['best_constant_agrees']:.0%} | {picks} | "
                     f"{shares} | {len(h['tasks_off_constant'])} of {len(h['tasks'])} |")
    tasks = sorted(runs[0]["training"]["tasks"])
    lines += ["", "| training task | oracle | " + " | ".join(f"seed {r['seed']}" for r in runs) + " |",
              "|" + " --- |" * (2 + len(runs))]
    for task in tasks:
        oracle = runs[0]["training"]["tasks"][task]["oracle"]
        picks = [r["training"]["tasks"].get(task, {}).get("planner", "—") for r in runs]
        lines.append(f"| {task} | {oracle} | " + " | ".join(f"**{p}**" if p == oracle else p for p in picks) + " |")
    return "\n".join(lines)


def report_section(name: str) -> str:
    """An evaluate.py report (evaluation.md copied to benchmarks/results/<name>.md), without its title."""
    md = RESULTS / f"{name}.md"
    if not md.is_file():
        return f"_Not measured yet (benchmarks/results/{name}.md from evaluate.py)._"
    return "\n".join(line for line in md.read_text().splitlines() if not line.startswith("# ")).strip()


def throughput() -> str:
    parts = []
    gen = load("generation")
    if gen:
        parts += ["**Generation** (`benchmarks/generation.py`; prompt "
                  f"{gen['prompt_tokens']} tokens, {gen['new_tokens']} new tokens, greedy, model load from the "
                  f"converted cache {gen['load_from_cache_s']} s):", "",
                  "| batch | prefix | tokens/s |", "| --- | --- | --- |"]
        parts += [f"| {r['batch']} | {'yes' if r['prefix'] else 'no'} | {r['tokens_per_s']:.1f} |"
                  for r in gen["rows"]]
        split = gen.get("prefill_decode", [])
        if split:
            parts += ["", f"Prefill and decode apart (batch {split[0]['batch']}, {split[0]['prompt_tokens']}-token "
                      "prompts, HF `generate`):", "",
                      "| dtype | prefill tokens/s | decode tokens/s |", "| --- | --- | --- |"]
            parts += [f"| {r['dtype']} | {r['prefill_tokens_per_s']:.0f} | {r['decode_tokens_per_s']:.0f} |"
                      for r in split]
        states = gen.get("states_vs_prefill")
        if states:
            parts += ["", "The RL state through the key/value cache (`FrozenLM.states`, whole chats from empty caches, "
                      f"batch {states['batch']}): {states['states_cached_path_tokens_per_s']:.0f} prompt tokens/s "
                      f"against {states['plain_prefill_tokens_per_s']:.0f} for a plain forward pass over the same "
                      f"tokens ({states['states_cost_vs_prefill']:.2f}x the time)."]
        parts += ["", machine_line(gen), ""]
    costs = load("decode_costs")
    if costs:
        parts += [f"**Decode loop** (`benchmarks/decode_costs.py`; one steered, sampled `generate` call: "
                  f"{costs['batch']} chats of {costs['chat_tokens']} tokens already in their caches, "
                  f"{costs['new_tokens']} new tokens each; best of {len(costs['rows'][0].get('seconds_each', [1]))}, "
                  "the variants taking turns; the first row is what `FrozenLM.generate` does):", "",
                  "| cache | top-p draw | fast paths | seconds | generated tokens/s |",
                  "| --- | --- | --- | --- | --- |"]
        caches = {"reserved": "room kept (`ReservedLayer`)", "concatenating": "transformers' `DynamicCache`"}
        samplers = {"nucleus": "nucleus only (`dat.lm.nucleus`)", "transformers": "transformers' (whole vocabulary)"}
        parts += [f"| {caches[r['cache']]} | {samplers[r['sampler']]} | {'on' if r['fastpaths'] else 'off'} | "
                  f"{r['seconds']:.1f} | {r['generated_tokens_per_s']:.0f} |" for r in costs["rows"]]
        parts += ["", machine_line(costs), ""]
    roll = load("rollout")
    if roll:
        peaks = roll.get("roofline_gflops", {})
        parts += [f"**Dialogues** (`benchmarks/rollout.py`; {roll.get('rounds')} rounds, {roll.get('new_tokens')} "
                  "new tokens per utterance, sampled, random actions with the prefix before the reply header, through "
                  "the PCA prefix or the default per-layer behaviour basis (HF only); "
                  "sequential = one dialogue at a time with batch-1 generation, every chat read whole at every "
                  "turn, as the original DAT code; batched = the lockstep runner with each agent's keys and values "
                  "kept between turns; vLLM = replies decoded by a vLLM server (`model.backend=vllm`), states by "
                  "the HF model; % roofline = generated tokens/s x "
                  f"{roll.get('gflop_per_token', '?')} GFLOP/token over the best matmul rate measured in the same "
                  f"run, {', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in peaks.items())}, prefill not counted; speed-up "
                  "over the float32 sequential loop, in brackets over the sequential loop in the dtype the replies "
                  "are decoded in, where that differs; every row the fastest of "
                  f"{len(roll['rows'][0].get('dialogues_per_hour_each_run', [1]))} runs, played in turns):", "",
                  "| mode | backend (dtype) | action | dialogues | seconds (state pass) | dialogues/hour "
                  "| generated tokens/s | % roofline | speed-up |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in roll["rows"]:
            mode = "sequential" if r["batch_size"] == 1 else f"batched, N = {r['batch_size']}"
            backend = f"{r.get('backend', 'hf')} ({r.get('vllm_dtype', r.get('dtype', 'float32'))})"
            same = r.get("speedup_vs_sequential_same_dtype")
            speedup = f"{r['speedup_vs_sequential']:.2f}x" + (
                f" ({same:.2f}x)" if same is not None and same != r["speedup_vs_sequential"] else "")
            share = f"{100 * r['roofline_share']:.1f}" if "roofline_share" in r else "–"
            states = f" ({r['states_seconds']:.0f})" if "states_seconds" in r else ""
            action = "PCA, input" if r.get("action", "pca") == "pca" else r["action"]
            made = f"{r['generated_tokens_per_s']:.1f}" if "generated_tokens_per_s" in r else "–"
            parts.append(f"| {mode} | {backend} | {action} | {r['dialogues']} | {r['seconds']:.0f}{states} | "
                         f"{r['dialogues_per_hour']:.0f} | {made} | {share} | {speedup} |")
        starts = [r["vllm_start_seconds"] for r in roll["rows"] if "vllm_start_seconds" in r]
        if starts:
            parts += ["", f"The vLLM server took {starts[0]:.0f} s to start (once per run, not in the times above)."]
        ceiling = roll.get("ceiling")
        if ceiling:
            best = ceiling["dialogues_per_hour"]
            parts += ["", f"**Ceiling**: each dialogue above makes the model read at least "
                      f"{ceiling['tokens_read_per_dialogue']:.0f} tokens (each agent's chat up to its last reply, "
                      f"{ceiling['from']}), unless chats share text (the key/value store reads what they begin "
                      f"with alike once); at {ceiling['gflop_per_token_lower_bound']} GFLOP per token (matmuls "
                      "of the transformer body only) and the full matmul roofline, no engine could play more than "
                      + ", ".join(f"{v} dialogues/hour in {k}" for k, v in best.items())
                      + f" on this machine. Ten times the sequential loop ({ceiling['ten_times_sequential']}) "
                      "would need the whole rollout (prefill, decode, states, sampling, padding) to run at "
                      + " or ".join(f"{100 * v:.0f}% of the {k} roofline" for k, v in
                                    ceiling["roofline_share_needed_for_ten_times"].items())
                      + ", where decoding reaches a few per cent."]
            floor = ceiling.get("dialogues_per_hour_at_batch")
            if floor:
                sequential = ceiling["ten_times_sequential"] / 10
                steps = ceiling["weight_step_ms"]
                parts += ["", "**Floor with memory counted**: decoding is bound by memory, not FLOPs: each step "
                          "multiplies every weight of the model, too large for any cache, by one row per dialogue. "
                          "One step's matrix products take " + "; ".join(
                              f"{k} " + ", ".join(f"{ms} ms at {n} rows" for n, ms in v.items())
                              for k, v in steps.items())
                          + f" here. With the {ceiling['tokens_decoded_per_dialogue']:.0f} tokens each dialogue "
                          "decodes in steps of that cost and the rest read at the roofline, no engine built on "
                          "these matrix products plays more than " + "; ".join(
                              f"{k} " + ", ".join(f"{d} dialogues/hour at N = {n} ({d / sequential:.1f}x the "
                                                  "sequential loop)" for n, d in v.items())
                              for k, v in floor.items()) + "."]
        parts += time_spent(roll)
        parts += ["", machine_line(roll), ""]
    td3 = load("td3bc_pendulum")
    if td3 and "updates_per_s" in json.dumps(td3):
        parts += [td3_updates(td3), ""]
    judges = load("judges")
    if judges:
        parts += ["**Judges** (`benchmarks/judges.py`):", "", "| judge | dialogues/s |", "| --- | --- |"]
        for key, label in (("local_all_dimensions", "local (default model), all 7 dimensions"),
                           ("local_goal_only", "local (default model), goal only"),
                           ("embedding", "embedding (all-MiniLM-L6-v2)"), ("rule", "rule")):
            if key in judges:
                parts.append(f"| {label} | {judges[key]['calls_per_s']:.2f} |")
        parts += ["", machine_line(judges)]
    return "\n".join(parts) if parts else "_Not measured yet: run `make bench`._"


def time_spent(roll: dict) -> list[str]:
    """Where each batched row of the default action space spent its time (``ForwardClock`` in rollout.py),
    set against the floor and against ten times the sequential loop."""
    rows = [r for r in roll["rows"] if r["batch_size"] > 1 and "decode_steps" in r
            and r.get("action", "").startswith("behaviours")]
    ceiling, sequential = roll.get("ceiling") or {}, roll["rows"][0]["dialogues_per_hour"]
    if not rows:
        return []
    steps = ceiling.get("weight_step_ms", {})
    lines = []
    for r in rows:
        floor_ms = steps.get(r["dtype"], {}).get(str(r["batch_size"]))
        lines.append(
            f"{r['dtype']}, N = {r['batch_size']}: {r['seconds']:.0f} s = decoding {r['decode_seconds']:.1f} s "
            f"({r['decode_steps']} steps of {r['decode_ms_per_step']:.0f} ms at {r['decode_rows_per_step']:.0f} "
            f"rows on average" + (f"; the matrix products alone take {floor_ms} ms at {r['batch_size']} rows"
                                  if floor_ms else "")
            + f") + reading {r['read_seconds']:.1f} s ({r['read_tokens_padded']:,} tokens with padding in "
            f"{r['read_forwards']} passes, {r['read_tokens_per_s']} tokens/s) + {r['outside_model_seconds']:.1f} s "
            f"outside the model; ten times the sequential loop would play these {r['dialogues']} dialogues in "
            f"{3600 * r['dialogues'] / (10 * sequential):.0f} s")
    decoded = ceiling.get("tokens_decoded_per_dialogue")
    return ["", "**Where the time goes** (each forward pass of the model timed in the row: a decoding step "
            "reads one token per dialogue, a read several): " + "; ".join(lines) + "."
            + (f" The floor counts {decoded:.0f} decoding steps for a batch of dialogues (the tokens one "
               "dialogue decodes); the runner takes more, because each of its waves of replies (one generation "
               "call) lasts as long as its longest reply, and the waves of opening lines and of last replies "
               "hold only the dialogues whose partner opens, or whose partner has the last word."
               if decoded else "")]


def td3_updates(data: dict) -> str:
    found = _find(data, "updates_per_s")
    desc = data.get("throughput", {}) if isinstance(data.get("throughput"), dict) else {}
    extra = ", ".join(f"{k} {v}" for k, v in desc.items() if k != "updates_per_s" and not isinstance(v, dict))
    return f"**TD3+BC updates** (`benchmarks/td3bc_pendulum.py`): {found:.0f} updates/s ({extra})."


def _find(data, key):
    if isinstance(data, dict):
        if key in data:
            return data[key]
        for value in data.values():
            hit = _find(value, key)
            if hit is not None:
                return hit
    return None


def td3bc() -> str:
    data = load("td3bc_pendulum")
    if data is None:
        return "_Not measured yet: run `python benchmarks/td3bc_pendulum.py`._"
    cfg, sets, off = data["config"], data["datasets"], data["offline"]
    lines = [f"Offline Pendulum-v1 from an SB3 TD3 expert: {len(cfg['seeds'])} seeds, {cfg['offline_steps']} "
             f"gradient steps, random policy {data['random_return']:.0f}, returns of the final policy "
             "(mean over seeds; each seed's mean over evaluation episodes).", "",
             "| dataset | behaviour return | TD3+BC (α = 2.5) | plain TD3 (α = 0) |", "| --- | --- | --- | --- |"]
    for name in ("expert", "medium"):
        runs = off[name]
        seeds = ", ".join(f"{x:.0f}" for x in runs["td3bc"]["final"])
        lines.append(f"| {name} | {sets[name]['behaviour_return']:.0f} | **{runs['td3bc']['final_mean']:.0f}** "
                     f"({seeds}) | {runs['td3']['final_mean']:.0f} |")
    checks = data["checks"]
    verdict = all(checks[k] for k in ("td3bc_expert_reaches_behaviour", "td3bc_medium_no_collapse", "td3_collapses"))
    lines += ["", f"Required checks {'pass' if verdict else 'FAIL'}: TD3+BC reaches the behaviour return on "
              "expert data and does not collapse on medium data; plain TD3 collapses on both.",
              "", machine_line({"machine": {**data.get("machine", {})}}) if "machine" in data else ""]
    return "\n".join(lines)


def state_matters() -> str:
    """experiments/state_matters.py's tables: the pooled state (the experiment's default), then DAT's last token."""
    parts = []
    for name, label in (("state_matters", "state = mean over the chat (`env.state_pool=mean`, the default of "
                                          "`experiment=mood`)"),
                        ("state_matters_last", "state = last token (`env.state_pool=last`, DAT's)")):
        md = RESULTS / f"{name}.md"
        if md.is_file():
            parts += [f"**{label}**", "", md.read_text().strip(), ""]
    return "\n".join(parts).strip() or "_Not measured yet: run `python experiments/state_matters.py`._"


def markdown_file(name: str, command: str) -> str:
    """A results file a benchmark wrote as Markdown (``benchmarks/results/<name>.md``), without its title."""
    md = RESULTS / f"{name}.md"
    if not md.is_file():
        return f"_Not measured yet (benchmarks/results/{name}.md): run `{command}`._"
    return "\n".join(line for line in md.read_text().splitlines() if not line.startswith("# ")).strip()


# The levers tried for a goal axis, in the order they were tried: (configuration, result file, what its
# behaviours are, a note on why it falls short where the gate's criteria do not say it).
LEVERS = (
    ("behaviours_goal", "steerability", "± sentiment, on/off goal (MiniLM similarity), plain pool",
     "on_goal barely trains (implicit margin 0.4 nats)"),
    ("behaviours_hint", "steerability_train", "± sentiment, on_goal = rule hits, hinted pool",
     "goal axis too weak (hints raise rule hits only to 23 of 272)"),
    ("behaviours_hint:norm=1.5", "steerability_train", "the same, prefix scaled 1.5x", ""),
    ("behaviours_hint_goal", "steerability_train", "± sentiment, on_goal = goal similarity, hinted pool",
     "goal axis too weak"),
    ("behaviours_goal_hint", "steerability_train", "on_goal (goal similarity, hinted pool) vs off_goal", ""),
    ("behaviours_goal_hint_deep", "steerability_train",
     "the same, per-layer prefixes (`prefix.depth=layers`), scale 1", ""),
    ("behaviours_goal_hint_deep:norm=0.8", "steerability_train", "the same, scaled 0.8", ""),
    ("behaviours_goal_hint_deep:norm=0.6", "steerability_train", "scaled 0.6", ""),
    ("behaviours_goal_hint_deep:norm=0.5", "steerability_train", "scaled 0.5 (the preset, the default)", ""),
)


def failed_criteria(config: dict) -> str:
    """The gate's failed criteria, leaving out the refusal to pass on the train split."""
    fails = [r.removeprefix("FAIL: ").replace("; needs", ", needs") for r in config.get("gate_reasons", [])
             if r.startswith("FAIL")]
    return "; ".join(fails) if fails else "all met"


def steerability_levers() -> str:
    """The goal-axis levers, each row read from the steerability result file it was measured in."""
    lines = ["| basis (preset) | split | behaviours | goal corr (± SE) | best-of-K goal | keyword corr | "
             "log-prob cost (nats/token) | gate criteria (the split aside) | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, source, behaviours, note in LEVERS:
        data = load(source)
        config = (data or {}).get("configs", {}).get(name)
        if config is None:
            lines.append(f"| `{name}` | — | {behaviours} | not in benchmarks/results/{source}.json | | | | | {note} |")
            continue
        rewards = config["rewards"]
        goal, keyword = rewards["goal"], rewards["keyword"]
        lines.append(
            f"| `{name}` | {data['settings']['split']} | {behaviours} | {goal['corr']['corr']:+.2f} ± "
            f"{goal['corr']['se']:.2f} | {goal['best_of_k']['z']:+.1f} SE | {keyword['corr']['corr']:+.2f} | "
            f"{config['fluency']['cost']:.2f} | {failed_criteria(config)} | {note} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------
# The README's summary: one row per study, each figure read from the result file behind the study's page.

SEE_PAGE = "see page"
DEFAULT_ACTION_SPACE = "behaviours_goal_hint_deep:norm=0.5"


def signed(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}"


def diff_text(d: dict, keys: tuple[str, str, str, str] = ("mean_diff", "ci_low", "ci_high", "p_value")) -> str:
    """``+0.18 [0.11, 0.25]`` from a paired difference (bootstrap interval)."""
    mean, low, high, _ = (d[k] for k in keys)
    return f"{signed(mean)} [{low:.2f}, {high:.2f}]"


def where(d: dict, keys: tuple[str, str] = ("ci_low", "ci_high")) -> int:
    """+1 when the interval lies above 0, -1 below, 0 when it holds 0."""
    low, high = (d[k] for k in keys)
    return 1 if low > 0 else -1 if high < 0 else 0


def gate_runs(name: str = "gate_default") -> str:
    """``dat gate`` runs gathered by ``experiments/steerability.py --gates``, one row per seed; a behaviour basis's
    real positives per behaviour below."""
    data = load(name)
    if not data:
        return "_Not measured yet: `dat gate seed=0`, `dat gate seed=1`, then `python experiments/steerability.py " \
               "--gates outputs/gate/seed=0 outputs/gate/seed=1`._"
    key = "seed" if all(k.isdigit() for k in data["runs"]) else "run"  # one setting at several seeds, or settings
    lines = [f"| {key} | gate | goal correlation (± SE) | best-of-K (SE) | log-prob cost | criteria |",
             "| --- | --- | --- | --- | --- | --- |"]
    for seed, run in sorted(data["runs"].items()):
        r = run["result"]
        goal = r["rewards"]["goal"]
        lines.append(f"| {seed} | {'pass' if r['gate'] else 'fail'} | {goal['corr']['corr']:.2f} ± "
                     f"{goal['corr']['se']:.2f} | {goal['best_of_k']['z']:+.1f} | {r['fluency']['cost']:.2f} | "
                     + "; ".join(x.removeprefix("ok: ") for x in r["gate_reasons"]) + " |")
    first = next(iter(data["runs"].values()))
    bases: dict[str, list[str]] = {}  # each distinct basis (its record) and the runs that played it
    for seed, run in sorted(data["runs"].items()):
        if run.get("basis"):
            bases.setdefault(json.dumps(run["basis"], sort_keys=True), []).append(seed)
    for seeds in bases.values():
        run = data["runs"][seeds[0]]
        title = "" if len(bases) == 1 else \
            f"The basis of {key}{'s' if len(seeds) > 1 else ''} " + " and ".join(f"`{s}`" for s in seeds) + ":"
        lines += ["", *([title, ""] if title else []),
                  "| behaviour | scorer | pairs | margin before → after | replies showing it (own / hinted) |",
                  "| --- | --- | --- | --- | --- |"]
        scorers = {b["name"]: b["scorer"] for b in (run.get("behaviours") or {}).get("behaviours", [])}
        for b in run["basis"]:
            shown = " / ".join(f"{v['shown']} of {v['replies']}" for v in b.get("positives", {}).values()) or "–"
            lines.append(f"| {b['name']} | {scorers.get(b['name'], '?')} | {b['pairs']} | {b['margin_before']:.1f} → "
                         f"{b['margin_after']:.1f} | {shown} |")
    lines += own_scorer_tables(data["runs"], key)
    norms = ", ".join(sorted({f"{run['prefix']['norm']:g}" for run in data["runs"].values()}))
    lines += ["", f"Action space: `prefix.kind={first['prefix']['kind']}`, norm {norms}; "
              f"{first['result']['prompts']} held-out prompts ({first['result']['scenarios']}), "
              f"K = {first['gate_settings']['actions']} random actions; machine: {data['machine'].get('cpu', '?')}."]
    return "\n".join(lines)


def own_scorer_tables(runs: dict, key: str = "seed") -> list[str]:
    """A behaviour basis's gate on each behaviour's own scorer (one row per seed and behaviour), then each seed's
    effect table: per prefix (the random actions whose largest logit picks it), the shift of every own scorer
    against the unsteered model, mean ± SE over prompts. Empty for a run measured before these were."""
    measured = {seed: run["result"] for seed, run in sorted(runs.items()) if run["result"].get("behaviours")}
    if not measured:
        return []
    lines = ["", "Each behaviour on its own scorer (higher: more of the behaviour):", "",
             f"| {key} | behaviour | same-action correlation (± SE) | best-of-K (SE) | |",
             "| --- | --- | --- | --- | --- |"]
    for seed, r in measured.items():
        for name, (ok, _) in st.behaviour_checks(r).items():
            b = r["behaviours"][name]
            lines.append(f"| {seed} | {name} | {b['corr']['corr']:.2f} ± {b['corr']['se']:.2f} | "
                         f"{b['best_of_k']['z']:+.1f} | {'ok' if ok else 'FAIL'} |")
    for seed, r in measured.items():
        names = list(r["behaviours"])
        fluency = all("cost" in e for e in r["effects"].values())  # measured since the gate records them per prefix
        extra = ["log-prob cost (nats/token)", "degenerate"] if fluency else []
        lines += ["", f"{key.capitalize()} {seed}: each prefix's shift of every own scorer against the unsteered "
                      "model (mean ± SE over prompts; the intended one on the diagonal)"
                      + (", and what its replies cost in fluency" if fluency else "") + ":", "",
                  "| prefix picked | actions | " + " | ".join(names + extra) + " |",
                  "| --- | --- |" + " --- |" * (len(names) + len(extra))]
        for group, e in r["effects"].items():
            cells = [f"{e['shift'][f'behaviour:{n}']['mean']:+.2f} ± {e['shift'][f'behaviour:{n}']['se']:.2f}"
                     for n in names]
            cells += [f"{e['cost']:.2f}", f"{e['degenerate']:.1%}"] if fluency else []
            lines.append(f"| {group} | {e['actions']} | " + " | ".join(cells) + " |")
    return lines


def summary_steerability() -> tuple[str, str]:
    current = load("gate_default")
    if current:
        results = [current["runs"][k]["result"] for k in sorted(current["runs"])]
        passed = sum(bool(r["gate"]) for r in results)
        corr = " and ".join(f"{r['rewards']['goal']['corr']['corr']:.2f} ± {r['rewards']['goal']['corr']['se']:.2f}"
                            for r in results)
        bok = " and ".join(f"{r['rewards']['goal']['best_of_k']['z']:+.1f}" for r in results)
        cost = " and ".join(f"{r['fluency']['cost']:.2f}" for r in results)
        return (f"{'yes' if passed == len(results) else 'no'}: on the current defaults the default action space "
                f"passes at {passed} of {len(results)} seeds",
                f"goal correlation {corr} (± SE), best-of-K {bok} SE, log-prob cost {cost} nats/token (seeds "
                f"{' and '.join(sorted(current['runs']))}; {results[0]['prompts']} held-out prompts, "
                f"K = {results[0].get('actions', '?')})")
    runs = [r for r in (load("steerability"), load("steerability_seed1")) if r]
    runs = [r for r in runs if DEFAULT_ACTION_SPACE in r.get("configs", {})]
    if not runs:
        return SEE_PAGE, SEE_PAGE
    configs = [r["configs"][DEFAULT_ACTION_SPACE] for r in runs]
    seeds = " and ".join(str(r["settings"]["seed"]) for r in runs)
    passed = sum(bool(c["gate"]) for c in configs)
    pca = {r["settings"]["seed"]: r["configs"]["pca"]["gate"] for r in runs if "pca" in r["configs"]}
    verdict = f"yes for the default action space: it passes at {passed} of {len(configs)} seeds" + (
        f"; DAT's PCA prefix fails (seed {', '.join(map(str, pca))})" if pca and not any(pca.values()) else "")
    corr = " and ".join(f"{c['rewards']['goal']['corr']['corr']:.2f} ± {c['rewards']['goal']['corr']['se']:.2f}"
                        for c in configs)
    bok = " and ".join(f"{c['rewards']['goal']['best_of_k']['z']:+.1f}" for c in configs)
    s = runs[0]["settings"]
    figure = (f"goal correlation {corr} (± SE), best-of-K {bok} SE (seeds {seeds}; {s['prompts']} held-out "
              f"prompts, K = {s['actions']})")
    return verdict, figure


def per_seed(label: str, diffs: list[dict], runs: list[dict]) -> str:
    """``<label> +0.18 [0.11, 0.25], ... (95 %; seeds 0, 1, 2; 14 held-out tasks)``: one paired difference per seed."""
    return (f"{label} {', '.join(diff_text(d) for d in diffs)} (95 %; seeds "
            f"{', '.join(str(r['seed']) for r in runs)}; {diffs[0].get('n_groups')} held-out tasks)")


def summary_sanity() -> tuple[str, str]:
    data = load("sanity")
    if not data or not data.get("runs"):
        return SEE_PAGE, SEE_PAGE
    runs = sorted(data["runs"], key=lambda r: r["seed"] or 0)
    diffs = [r["results"]["policy"]["reward"]["diff"] for r in runs]
    above = sum(where(d) > 0 for d in diffs)
    verdict = (f"{'yes' if above == len(runs) else 'no'}: the planner beats the unsteered model at {above} of "
               f"{len(runs)} seeds")
    if not all("versus" in r for r in runs):
        return verdict, per_seed("policy − unsteered", diffs, runs)
    versus = [r["versus"]["results"]["reward"] for r in runs]
    controls = ", ".join(sorted({r["versus"]["control"] for r in runs}))
    verdict += f", the strongest baseline ({controls}) at {sum(where(d) > 0 for d in versus)}"
    return verdict, per_seed("policy − strongest baseline", versus, runs)


def summary_default_run() -> tuple[str, str]:
    """The default run at three seeds (``summarize_runs.py --name default_run``): the planner against the strongest
    baseline of each seed's final evaluation."""
    data = load("default_run")
    if not data or not data.get("runs") or not all("versus" in r for r in data["runs"]):
        return PROSE_VERDICTS["default-run"], SEE_PAGE
    runs = sorted(data["runs"], key=lambda r: r["seed"] or 0)
    versus = [r["versus"]["results"]["reward"] for r in runs]
    above = sum(where(d) > 0 for d in versus)
    controls = sorted({r["versus"]["control"] for r in runs})
    verdict = (f"{'yes' if above == len(runs) else 'no'}: the planner beats the strongest baseline "
               f"({', '.join(controls)}) at {above} of {len(runs)} seeds")
    return verdict, per_seed("policy − strongest baseline", versus, runs)


def summary_acts_planner() -> tuple[str, str]:
    """The planner on the four-act basis at three seeds: its bar is the best constant act (chosen on the training
    tasks), with the interval above 0 at every seed. Read from its evaluation on the held-out split with the
    training split's kinds (``acts_kinds``) where measured, else from training's own final evaluation (``acts_run``)."""
    data = load("acts_kinds") or load("acts_run")
    if not data or not data.get("runs") or not all("best_constant" in r.get("policy_vs", {}) for r in data["runs"]):
        return SEE_PAGE, SEE_PAGE
    runs = sorted(data["runs"], key=lambda r: r["seed"] or 0)
    diffs = [r["policy_vs"]["best_constant"] for r in runs]
    above = sum(where(d) > 0 for d in diffs)
    unsteered = sum(where(r["policy_vs"]["unsteered"]) > 0 for r in runs)
    strongest = sum(where(r["versus"]["results"]["reward"]) > 0 for r in runs)
    controls = ", ".join(sorted({r["versus"]["control"] for r in runs}))
    verdict = (f"{'yes' if above == len(runs) else 'no'}: the planner beats the best constant act at {above} of "
               f"{len(runs)} seeds, the unsteered model at {unsteered}, the strongest baseline ({controls}) at "
               f"{strongest}")
    return verdict, per_seed("policy − best constant", diffs, runs)


def summary_prompt_formats() -> tuple[str, str]:
    data = load("prompt_formats")
    if not data:
        return SEE_PAGE, SEE_PAGE
    rows = data["formats"]
    fair = {k: r["in_character_no_echo"] for k, r in rows.items()}
    best, old, top = max(fair, key=fair.get), "default cue", max(rows, key=lambda k: rows[k]["reward"])
    verdict = ("yes: a plain greeting, the default, keeps the most unsteered lines in character"
               if best == "cue reworded" else
               f"no: \"{best}\" keeps more unsteered lines in character ({fair[best]:.0%}) than the default "
               f"({fair['cue reworded']:.0%})")
    figure = (f"in character {fair[old]:.0%} → {fair['cue reworded']:.0%}; top reward {rows[top]['reward']:.2f} "
              f"({top}, {fair[top]:.0%} in character; {data['tasks']} tasks × {data['per_task']})")
    return verdict, figure


def summary_state_matters() -> tuple[str, str]:
    data = load("state_matters")
    if not data or not data.get("runs"):
        return SEE_PAGE, SEE_PAGE
    runs = sorted(data["runs"], key=lambda r: r["seed"])
    diffs = [r["policy_minus_constant"] for r in runs]
    above = sum(where(d) > 0 for d in diffs)
    verdict = f"{'no' if above == 0 else 'partly'}: the planner beats the best constant action at {above} of " \
              f"{len(runs)} seeds"
    figure = (f"policy − best constant {', '.join(diff_text(d) for d in diffs)} (95 %; seeds "
              f"{', '.join(str(r['seed']) for r in runs)}; {diffs[0].get('n_groups')} held-out tasks)")
    return verdict, figure


def summary_state_learning() -> tuple[str, str]:
    """experiments/state_learning.py's result: the bar per dataset, the figures of the first dataset's largest N."""
    data = load("state_learning")

    def text(d: dict) -> str:
        return f"{signed(d['diff'], 3)} [{d['low']:.3f}, {d['high']:.3f}]"

    from state_learning import passes as passed  # the bar, as the study writes it

    try:
        blocks = data["datasets"] if "datasets" in data else {"greedy": data}
        best, seeds = 0, 0
        for block in blocks.values():
            sizes = sorted({r["n"] for r in block["runs"]})
            best = max(best, *(sum(passed(r) for r in block["runs"] if r["n"] == n) for n in sizes))
            seeds = max(seeds, len({r["seed"] for r in block["runs"]}))
        verdicts = [f"{'yes' if best == seeds else 'no'}: the bar is met at {best} of {seeds} seeds at best, over "
                    f"{len(blocks)} settings of data, basis and training (N up to "
                    f"{max(r['n'] for b in blocks.values() for r in b['runs']):,})"]
        def score(item: tuple[int, tuple[str, dict]]) -> tuple[int, int]:  # most seeds passing at one N, then latest
            runs = item[1][1]["runs"]
            return max(sum(passed(r) for r in runs if r["n"] == n) for n in {r["n"] for r in runs}), item[0]

        name, block = max(enumerate(blocks.items()), key=score)[1]
        n = max({r["n"] for r in block["runs"]},  # the size where most seeds pass, the largest of those
                key=lambda size: (sum(passed(r) for r in block["runs"] if r["n"] == size), size))
        last = sorted((r for r in block["runs"] if r["n"] == n), key=lambda r: r["seed"])
        figure = (f"{name}, N = {n:,}: policy − unsteered {', '.join(text(r['vs_unsteered']) for r in last)}; − best "
                  f"constant {', '.join(text(r['vs_best_constant']) for r in last)} (95 %; seeds "
                  f"{', '.join(str(r['seed']) for r in last)})")
        return "; ".join(verdicts), figure
    except (TypeError, KeyError, ValueError, AttributeError, StopIteration):
        return SEE_PAGE, SEE_PAGE


def summary_sotopia() -> tuple[str, str]:
    data = load("sotopia_hard")
    try:
        goal = data["results"]["policy"]["goal"]["diff"]
        meta = data["metadata"]
    except (TypeError, KeyError):
        return SEE_PAGE, SEE_PAGE
    verdict = {0: "no measurable difference on the goal score", 1: "the planner scores higher on goal",
               -1: "the planner scores lower on goal"}[where(goal)]
    figure = (f"Δ goal (0–10) {diff_text(goal)}, p = {goal['p_value']:.2f} (95 %; {meta.get('scenarios')}, "
              f"seed {meta.get('seed')})")
    return verdict, figure


def summary_stability() -> tuple[str, str]:
    data = load("stability_training")
    try:
        pooled, per_seed = data["pooled"]["policy"], data["per_seed"]
    except (TypeError, KeyError):
        return SEE_PAGE, SEE_PAGE
    above = sum(where(s["policy"]) > 0 for s in per_seed)
    verdict = {1: "yes", 0: "no measurable difference", -1: "no: the planner scores below the unsteered model"}[
        where(pooled)] + f", pooled; above it at {above} of {len(per_seed)} seeds"
    figure = (f"planner − unsteered, pooled {diff_text(pooled)}, p = {pooled['p_value']:.2f} (95 %; "
              f"{len(per_seed)} seeds, {pooled.get('n_groups')} held-out tasks)")
    return verdict, figure


def summary_td3bc() -> tuple[str, str]:
    data = load("td3bc_pendulum")
    try:
        checks, off, sets = data["checks"], data["offline"], data["datasets"]
        ok = all(checks[k] for k in ("td3bc_expert_reaches_behaviour", "td3bc_medium_no_collapse", "td3_collapses"))
        seeds = len(data["config"]["seeds"])
    except (TypeError, KeyError):
        return SEE_PAGE, SEE_PAGE
    verdict = "yes: every required check passes" if ok else "no: a required check fails"
    figure = "; ".join(f"{name}: TD3+BC {off[name]['td3bc']['final_mean']:.0f}, behaviour "
                       f"{sets[name]['behaviour_return']:.0f}, plain TD3 {off[name]['td3']['final_mean']:.0f}"
                       for name in ("expert", "medium")) + f" (return, mean of {seeds} seeds)"
    return verdict, figure


def summary_throughput() -> tuple[str, str]:
    data = load("rollout")
    try:
        rows = data["rows"]
        default = next(r for r in rows if r["batch_size"] == 16 and r.get("dtype") == "float32"
                       and r.get("backend", "hf") == "hf" and "default" in r.get("action", ""))
        best = max(rows, key=lambda r: r["speedup_vs_sequential"])
    except (TypeError, KeyError, StopIteration, ValueError):
        return SEE_PAGE, SEE_PAGE
    verdict = (f"{default['speedup_vs_sequential']:.2f}x for the default configuration, "
               f"{best['speedup_vs_sequential']:.2f}x at best ({best.get('dtype')}, N = {best['batch_size']})")
    runs = len(default.get("dialogues_per_hour_each_run", [1]))
    figure = (f"{default['dialogues_per_hour']:.0f} against {rows[0]['dialogues_per_hour']:.0f} dialogues/hour "
              f"(float32, N = 16; fastest of {runs} runs; {data['machine'].get('cores', '?')}-core "
              f"{data['machine'].get('cpu', '?').replace('(R)', '')})")
    return verdict, figure


def summary_collection() -> tuple[str, str]:
    data = load("collection")
    try:
        rows = [r for r in data["rows"] if r["row"] == "dat collect"]
        one = next(r for r in rows if r["task"].startswith("one-turn"))
        multi = [r for r in rows if r["task"].startswith("multi-turn")]
    except (TypeError, KeyError, StopIteration):
        return SEE_PAGE, SEE_PAGE
    verdict = (f"{'yes' if one['episodes_per_hour'] >= data['target_per_hour'] else 'no'}: "
               f"{one['episodes_per_hour']:,.0f} one-turn episodes per hour, {data['speedup'][one['task']]:.1f}x the "
               "earlier collector")
    figure = (f"{one['episodes']:,} moods episodes in {one['seconds'] / 60:.0f} min (greedy, 64 in lockstep; steady "
              f"state {one['steady_episodes_per_hour']:,.0f}/h)")
    if multi:
        figure += f"; multi-turn {multi[0]['episodes_per_hour']:,.0f}/h"
    m = data["machine"]
    return verdict, figure + f" ({m.get('cores', '?')}-core {m.get('cpu', '?').replace('(R)', '')})"


# (slug, study, question, page, what reads its verdict and figure; None: no result file holds the figures)
STUDIES = (
    ("steerability", "Steerability gate",
     "Does the choice of action change the reply reproducibly?",
     "docs/results/steerability.md", summary_steerability),
    ("default-run", "Default run",
     "Does the default run's planner beat the unsteered model and the best baseline a user could pick instead?",
     "docs/results/default-run.md", summary_default_run),
    ("prompt-formats", "Prompt formats",
     "Does the dialogue prompt give the unsteered model a fair chance (in character, not echoing the prompt)?",
     "docs/results/prompt-formats.md", summary_prompt_formats),
    ("sanity", "Sanity task", "Does the planner learn to use the action on a reward the prefix moves?",
     "docs/results/sanity.md", summary_sanity),
    ("state-matters", "State matters",
     "Does the planner read its state when the best action depends on the goal?",
     "docs/results/state-matters.md", summary_state_matters),
    ("acts-planner", "Four dialogue acts",
     "Does a planner picking among four dialogue acts beat the best constant act?",
     "docs/results/acts-planner.md", summary_acts_planner),
    ("state-learning", "Offline learning curve",
     "Does an offline planner read its state with more random-action episodes?",
     "docs/state-learning.md", summary_state_learning),
    ("sotopia", "Sotopia-hard",
     "Does a planner trained on the local judge's goal score move Sotopia-hard scores?",
     "docs/results/sotopia.md", summary_sotopia),
    ("instruction-stability", "Instruction stability",
     "Does a planner rewarded by the probe score keep the model on its system prompt?",
     "docs/results/instruction-stability.md", summary_stability),
    ("td3bc-pendulum", "TD3+BC validation",
     "Does the TD3+BC code behave as offline RL should (offline Pendulum)?",
     "docs/results/td3bc-pendulum.md", summary_td3bc),
    ("collection", "Dataset collection",
     "Does dat collect fill a one-turn dataset at 10,000 episodes per hour on 2 CPU cores?",
     "docs/datasets.md", summary_collection),
    ("throughput", "Throughput",
     "How much faster than DAT's sequential loop does the lockstep runner play?",
     "docs/performance.md", summary_throughput),
)

# Verdicts of studies whose figures live in prose only (no result file): their page gives the figures.
PROSE_VERDICTS = {
    "default-run": "beats the unsteered model, hardly the zero action: the gain comes mostly from a constant prefix",
}


# Pages another benchmark writes whole (experiments/state_learning.py): they get no opening answer from here.
WHOLE_PAGES = {"docs/state-learning.md", "docs/datasets.md", "docs/results/prompt-formats.md"}


def verdict_and_figure(slug: str) -> tuple[str, str]:
    read = next(s[4] for s in STUDIES if s[0] == slug)
    return read() if read else (PROSE_VERDICTS.get(slug, SEE_PAGE), SEE_PAGE)


def answer(slug: str) -> str:
    """The three lines a study page opens with, from the same figures as the README's summary row."""
    question = next(s[2] for s in STUDIES if s[0] == slug)
    verdict, figure = verdict_and_figure(slug)
    return f"- **Question:** {question}\n- **Verdict:** {verdict}.\n- **Key figure:** {figure}."


def summary() -> str:
    lines = ["| study | question | verdict | key figure | page |", "| --- | --- | --- | --- | --- |"]
    for slug, study, question, page, _ in STUDIES:
        verdict, figure = verdict_and_figure(slug)
        link = page.removeprefix("docs/")
        lines.append(f"| {study} | {question} | {verdict} | {figure} | [{link}]({page}) |")
    return "\n".join(lines)


SECTIONS = {
    "summary": summary,
    "steerability": steerability,
    "steerability_levers": steerability_levers,
    "gate_default": gate_runs,
    "gate_acts": lambda: gate_runs("gate_acts"),
    "gate_default_levers": lambda: gate_runs("gate_default_levers"),
    "gate_acts_levers": lambda: gate_runs("gate_acts_levers"),
    "gate_acts3": lambda: gate_runs("gate_acts3"),
    "gate_acts3_priced": lambda: gate_runs("gate_acts3_priced"),
    "gate_acts3_ask": lambda: gate_runs("gate_acts3_ask"),
    "gate_acts3_plain": lambda: gate_runs("gate_acts3_plain"),
    "sanity": lambda: planner_runs("sanity"),
    "default_run": lambda: planner_runs("default_run") + "\n\n" + held_out_table("default_run"),
    "acts_run": lambda: planner_runs("acts_run"),
    "acts_kinds": lambda: planner_runs("acts_kinds"),
    "acts_choices": lambda: choices_table("acts_choices"),
    "state_matters": state_matters,
    "sotopia": lambda: report_section("sotopia_hard"),
    "stability_baselines": lambda: markdown_file(
        "stability_baselines", "python stability.py model.backend=vllm batch_size=66"),
    "stability_training": lambda: markdown_file(
        "stability_training", "python experiments/stability_training.py <runs>"),
    "stability_short_training": lambda: markdown_file(
        "stability_short_training", "python experiments/stability_training.py --name stability_short_training <runs>"),
    "stability_planners": lambda: markdown_file(
        "stability_planners", "python experiments/stability_planners.py <runs> --unsteered <run>"),
    "stability_rule_basis": lambda: markdown_file(
        "stability_rule_basis", "python experiments/stability_training.py --name stability_rule_basis <runs>"),
    "throughput": throughput,
    "td3bc": td3bc,
    **{f"answer-{s[0]}": (lambda slug=s[0]: answer(slug)) for s in STUDIES
       if s[4] is not None and s[3] not in WHOLE_PAGES},
}

MARKER = re.compile(r"<!-- results:([\w-]+) -->")


def pages() -> list[Path]:
    """README.md and every page under docs/ (the files that may hold generated sections)."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def main() -> None:
    """Rewrite the generated sections from the JSON results: all of them, or those named on the command line
    (``python experiments/update_docs.py throughput``)."""
    import sys

    names = sys.argv[1:] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {sorted(SECTIONS)}")
    rendered = {name: SECTIONS[name]() for name in names}
    found: set[str] = set()
    for page in pages():
        text = page.read_text()
        markers = set(MARKER.findall(text)) & set(SECTIONS)  # others (e.g. collection) belong to their benchmark
        found |= markers
        new = text
        for name in markers & set(rendered):
            pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
            new = pattern.sub(lambda m, body=rendered[name]: m.group(1) + body + "\n" + m.group(2), new)
        if new != text:
            page.write_text(new)
            print(f"updated {page.relative_to(ROOT)}")
    missing = sorted(set(names) - found)
    if missing:
        raise SystemExit(f"no page holds the sections {missing}")


if __name__ == "__main__":
    main()
