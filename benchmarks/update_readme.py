"""Regenerate the README's result sections from the JSON files in benchmarks/results/.

Each section lives between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; a section whose
JSON is missing says so instead of keeping stale numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


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
        return "_Not measured yet: run `python benchmarks/steerability.py`._"
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
    meta = data["runs"][0]["metadata"] if data["runs"] else {}
    if meta:
        lines += ["", "Setup: " + "; ".join(f"{k}: {v}" for k, v in meta.items() if k not in ("round", "seed")) + "."]
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
    """benchmarks/state_matters.py's tables: the pooled state (the experiment's default), then DAT's last token."""
    parts = []
    for name, label in (("state_matters", "state = mean over the chat (`env.state_pool=mean`, the default of "
                                          "`experiment=mood`)"),
                        ("state_matters_last", "state = last token (`env.state_pool=last`, DAT's)")):
        md = RESULTS / f"{name}.md"
        if md.is_file():
            parts += [f"**{label}**", "", md.read_text().strip(), ""]
    return "\n".join(parts).strip() or "_Not measured yet: run `python benchmarks/state_matters.py`._"


SECTIONS = {
    "steerability": steerability,
    "sanity": lambda: runs_table("sanity"),
    "state_matters": state_matters,
    "sotopia": lambda: report_section("sotopia_hard"),
    "throughput": throughput,
    "td3bc": td3bc,
}


def main() -> None:
    """Rewrite the README's generated sections from the JSON results: all of them, or those named on the
    command line (``python benchmarks/update_readme.py throughput``)."""
    import sys

    names = sys.argv[1:] or list(SECTIONS)
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {sorted(SECTIONS)}")
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, render in ((n, SECTIONS[n]) for n in names):
        pattern = re.compile(rf"(<!-- results:{name} -->\n).*?(<!-- /results:{name} -->)", re.S)
        text = pattern.sub(lambda m, r=render: m.group(1) + r() + "\n" + m.group(2), text)
    readme.write_text(text)
    print(f"updated {readme}")


if __name__ == "__main__":
    main()
