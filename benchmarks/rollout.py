"""Rollout throughput of the default model: dialogues one at a time (batch-1 generation, chats re-read every
turn, as DAT's code runs them) vs the batched lockstep runner, on the HF backend and on vLLM.

Every condition plays the same episodes (same seeds, so the same tasks and sides) from the bundled scenario
set: dialogues of ``--rounds`` rounds, random actions through the PCA up-projection with the prefix before
the reply header (the default placement, which keeps each chat's cache valid), sampled decoding (the
collection default) capped at ``--new-tokens`` tokens per utterance. The judge is a constant (judging cost
is not part of this measurement). The sequential run reads every chat whole at every turn; the batched HF
runs keep each chat's keys and values between turns; the vLLM runs decode through a vLLM server
(``model.backend=vllm``, its own prefix cache) while the HF model computes the states. The default action
space (the shipped per-layer behaviour basis, ``prefix.depth=layers``, which only the HF backend can carry)
gets batched HF rows of its own (``--default-action-batches``), so the figure for the default rollout
configuration is measured, not inferred. Dialogues/hour is a rate, so the sequential run plays fewer
dialogues (the first ones of the same stream). Every row is played ``--runs`` times, in turns (all rows,
then all of them again), and the fastest run counts, for the sequential loop as for the batched ones: the
machine's speed drifts by 10-30 % within an hour, and one slow spell would move a ratio as much. Reported
per condition: wall time, dialogues/hour, generated tokens/s (prefill included in the time) and that rate's
share of this machine's matmul roofline (measured in the same run, at the backend's dtype), the machine load
around it, and where the time went (``ForwardClock``: decoding steps, reads, the rest).

Also reported: the **ceiling** this machine allows, whatever the engine. Every token of an agent's chat has
to pass through the model at least once for that agent (its own replies are decoded token by token, the
partner's lines and its system prompt are read), so the batched episodes give a lower bound on the tokens
read per dialogue; at 2 x (non-embedding parameters) FLOPs per token (attention and the output layer not
counted, so the bound stays a bound) and the measured matmul roofline, no engine can play more dialogues per
hour than that ceiling, which is set beside ten times the sequential rate.

That bound counts FLOPs only. Decoding is bound by memory instead: every step of a batch multiplies one
row per dialogue by every weight of the model, and a 135M model's weights do not fit in any cache, so each
step streams all of them from memory. The **floor at batch N** adds the two parts of the work: the tokens
read (system prompts, partner lines, reply headers) at the matmul roofline, and the tokens decoded, in at
least (decoded tokens / N) steps, each costing at least the measured time of the model's matrix products
at N rows (``weight_step_seconds``: every linear layer and the LM head, in the model's order, cold as in
a real step; attention, norms and sampling not counted). It is a floor for torch's matrix products on this
machine, not for every conceivable kernel.
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import torch  # noqa: E402

from dat.action.basis import PREBUILT, basis_name, dtype_name  # noqa: E402
from dat.action.behaviours import BehaviourConfig  # noqa: E402
from dat.action.projection import PrefixConfig, UpProjection, build_projection  # noqa: E402
from dat.dialogue.rollout import collect, collect_conditions  # noqa: E402
from dat.dialogue.rules import EnvConfig, agent_messages  # noqa: E402
from dat.lm.clock import ForwardClock  # noqa: E402
from dat.lm.frozen import FrozenLM, SamplingConfig  # noqa: E402
from dat.lm.loading import ModelConfig, artefact_folder, model_folder  # noqa: E402
from dat.lm.vllmengine import VLLMConfig, VLLMEngine  # noqa: E402
from envs.scenarios import load_scenarios  # noqa: E402
from envs.vector_env import collector_envs  # noqa: E402

DEFAULT_ACTION = "behaviours (per-layer, the default)"


def default_basis(lm) -> UpProjection:
    """The default action space's basis as shipped for ``lm``'s dtype (each dtype has its own)."""
    name = basis_name(BehaviourConfig(name="goal_hint_deep"), dtype_name(lm))
    return UpProjection.load(PREBUILT / lm.name / name, position="before_reply")


def constant_judge(records):
    return [0.0] * len(records)


def roofline(dtype: torch.dtype, size: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of the best of ``repeats`` square matmuls: what generation could reach on this machine."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def tokens_read(lm, tasks, episodes, cfg) -> tuple[float, float]:
    """Mean tokens per dialogue that some forward pass must read: per agent, its chat up to its own last
    reply, less that reply's last token (sampled, never read back). A lower bound on the work. Returned
    in two parts: the tokens an agent reads (its system text, the partner's lines, the chat template) and
    those it decodes (its own replies, one step each)."""
    by_id = {t.id: t for t in tasks}
    total = decoded = 0
    for e in episodes:
        turns = e.record.turns
        for agent in (0, 1):
            own = [i for i, t in enumerate(turns) if t.agent == agent]
            if not own:
                continue
            last = own[-1]
            system = by_id[e.task_id].agent_view(agent, leave_phrase=cfg.leave_phrase)
            before = agent_messages(system, turns[:last], agent, cfg.opening_cue)
            replies = [lm.tokenizer(turns[i].text, add_special_tokens=False)["input_ids"] for i in own]
            total += lm.count_tokens(before) + max(len(replies[-1]) - 1, 0)
            decoded += sum(len(r) for r in replies[:-1]) + max(len(replies[-1]) - 1, 0)
    return (total - decoded) / len(episodes), decoded / len(episodes)


def weight_step_seconds(model, batch: int, dtype: torch.dtype, repeats: int = 3) -> float:
    """Best of ``repeats`` timings of one decode step's matrix products at ``batch`` rows: a ``(batch, in)``
    input times every linear layer's weight (the LM head included), in the model's order, in ``dtype``.
    Together the weights are far larger than any cache, so each product reads its weight from memory, as
    in a real step."""
    weights = [m.weight.detach().to(dtype) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    inputs = {w.shape[1]: torch.randn(batch, w.shape[1], dtype=dtype) for w in weights}
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first pass warms the kernels up
            start = time.perf_counter()
            for w in weights:
                torch.nn.functional.linear(inputs[w.shape[1]], w)
            best = min(best, time.perf_counter() - start)
    return best


def ceiling_of(lm, tasks, episodes, cfg, peaks: dict[str, float], sequential: float,
               batches: tuple[int, ...] = (16, 64)) -> dict:
    """The most dialogues/hour any engine could play here (the FLOPs of ``episodes`` at the roofline), and
    the floor at each of ``batches`` once decoding's memory traffic is counted (module docstring)."""
    read, decoded = tokens_read(lm, tasks, episodes, cfg)
    per_dialogue = read + decoded
    body = sum(p.numel() for n, p in lm.model.named_parameters() if "embed" not in n and "lm_head" not in n)
    gflop_per_token = 2 * body / 1e9
    floor_gflop = gflop_per_token * per_dialogue
    step = {k: {n: weight_step_seconds(lm.model, n, getattr(torch, k)) for n in batches} for k in peaks}
    at_batch = {k: {str(n): round(3600 / (read * gflop_per_token / peaks[k] + decoded / n * step[k][n]))
                    for n in batches} for k in peaks}
    return {
        "tokens_read_per_dialogue": round(per_dialogue, 1),
        "tokens_decoded_per_dialogue": round(decoded, 1),
        "gflop_per_token_lower_bound": round(gflop_per_token, 3),
        "dialogues_per_hour": {k: round(3600 * v / floor_gflop) for k, v in peaks.items()},
        "ten_times_sequential": round(10 * sequential),
        "roofline_share_needed_for_ten_times": {k: round(10 * sequential * floor_gflop / 3600 / v, 3)
                                                for k, v in peaks.items()},
        "weight_step_ms": {k: {str(n): round(1e3 * s, 1) for n, s in v.items()} for k, v in step.items()},
        "dialogues_per_hour_at_batch": at_batch,
        "from": f"the batched HF episodes ({len(episodes)})",
    }


def run(lm, projection, tasks, cfg, n, batch_size, kv_cache, seed, action: str = "pca") -> tuple[list, dict]:
    """One row: ``n`` episodes of random actions, ``batch_size`` in lockstep, from an empty key/value store (as a
    training round starts), so a row shares only what its own dialogues have in common."""
    load_before = os.getloadavg()[0]
    stats: dict[str, float] = {}
    envs = collector_envs(lm, projection, tasks, constant_judge, replace(cfg, kv_cache=kv_cache), episodes=n,
                          batch_size=batch_size)
    lm.kv_store.clear()
    with ForwardClock(lm) as clock:
        episodes = collect(envs, "random", n, seed, stats=stats)
    timed = clock.row(stats["perf/rollout_seconds"]) if lm.engine is None else {}  # vLLM: HF reads states only
    return episodes, {
        "backend": "vllm" if lm.engine is not None else "hf",
        "action": action,
        "dtype": dtype_name(lm),  # the HF model's (vLLM rows add vllm_dtype)
        "batch_size": batch_size,
        "kv_cache": kv_cache,
        "dialogues": len(episodes),
        "seconds": round(stats["perf/rollout_seconds"], 1),
        "dialogues_per_hour": round(stats["perf/dialogues_per_hour"], 1),
        "generated_tokens": int(stats["perf/generated_tokens"]),
        "generated_tokens_per_s": round(stats["perf/generated_tokens_per_s"], 2),
        "generate_calls": int(stats["perf/generate_calls"]),
        "states_seconds": round(stats["perf/states_seconds"], 1),  # the RL state pass (HF, on either backend)
        "generate_seconds": round(stats["perf/generate_seconds"], 1),
        "utterances": int(stats["perf/utterances"]),
        "kv_store_reused_tokens": int(stats["perf/kv_store_reused_tokens"]),  # read once, taken over by other chats
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        **timed,
    }


def evaluation_row(lm, projection, tasks, cfg, seed) -> dict:
    """An evaluation as train.py plays it: every task once under each condition (random actions standing for
    the planner, unsteered, zero action), all in one lockstep stream as wide as its dialogues, from an empty
    store; the conditions of a task begin with the same text, which is read once."""
    policies = {"policy": "random", "unsteered": None, "zero": "zero"}
    n = len(tasks) * len(policies)
    envs = collector_envs(lm, projection, tasks, constant_judge, cfg, episodes=n, batch_size=n)
    lm.kv_store.clear()
    reused, load_before = lm.kv_store.reused_tokens, os.getloadavg()[0]
    started = time.perf_counter()
    with ForwardClock(lm) as clock:
        collect_conditions(envs, policies, len(tasks), seed, task_order=list(range(len(tasks))))
    seconds = time.perf_counter() - started
    return {"backend": "hf", "action": f"evaluation: {len(tasks)} tasks x {len(policies)} conditions, "
            "default action space", "dtype": dtype_name(lm), "batch_size": n, "kv_cache": True, "dialogues": n,
            "seconds": round(seconds, 1), "dialogues_per_hour": round(3600 * n / seconds, 1),
            "kv_store_reused_tokens": lm.kv_store.reused_tokens - reused,
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], **clock.row(seconds)}


def best_of(runs: list[dict]) -> dict:
    """The fastest of a row's runs, with every run's rate kept (``dialogues_per_hour_each_run``)."""
    best = max(runs, key=lambda r: r["dialogues_per_hour"])
    return {**best, "dialogues_per_hour_each_run": [r["dialogues_per_hour"] for r in runs]}


def hf_rows(lm, projections, tasks, cfg, args, batches, default_batches) -> tuple[list[dict], list]:
    """The sequential run, then the batched runs (PCA action, then the default one) of one HF model, all of
    them ``args.runs`` times over; each row is the fastest of its runs (``best_of``)."""
    pca, default = projections
    plan = [("pca", pca, 1, False)] + [("pca", pca, n, True) for n in batches] + [
        (DEFAULT_ACTION, default, n, True) for n in default_batches]
    runs: list[list[dict]] = [[] for _ in plan]
    played = []
    for attempt in range(args.runs):
        for k, (action, projection, batch_size, kv_cache) in enumerate(plan):
            n = args.sequential_dialogues if batch_size == 1 else batch_size
            episodes, row = run(lm, projection, tasks, cfg, n, batch_size, kv_cache, args.seed, action)
            played += episodes if attempt == 0 and kv_cache and action == "pca" else []
            runs[k].append(row)
            print(row, flush=True)
    return [best_of(r) for r in runs], played


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sequential-dialogues", type=int, default=8, help="dialogues of the batch-1 run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="*", default=[16, 64],
                        help="batched HF runs (with kv cache): batch size (= dialogues)")
    parser.add_argument("--default-action-batches", type=int, nargs="*", default=[16],
                        help="batched HF runs with the default action space (per-layer behaviour basis)")
    parser.add_argument("--bfloat16", action=argparse.BooleanOptionalAction, default=True,
                        help="the HF rows again with the model in bfloat16 (model.dtype=bfloat16)")
    parser.add_argument("--vllm-batches", type=int, nargs="*", default=[16, 64],
                        help="vLLM runs: batch size (= dialogues); none skips vLLM")
    parser.add_argument("--vllm-dtype", default="bfloat16", help="vLLM's weights dtype (the HF model stays float32)")
    parser.add_argument("--eval-tasks", type=int, default=8,
                        help="an evaluation row as train.py plays it on this many held-out tasks (0: none)")
    parser.add_argument("--runs", type=int, default=2,
                        help="times each row is played, in turns (all rows, then all again); the fastest counts: "
                        "this machine's speed drifts by 10-30 %% within an hour")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = ModelConfig()
    lm = FrozenLM.load(model)
    prefix = PrefixConfig(position="before_reply")
    projection = build_projection(lm.model.get_input_embeddings().weight, prefix, artefact_folder(model))
    default = default_basis(lm)
    tasks = load_scenarios("bundled")
    cfg = EnvConfig(max_turns=args.rounds, sampling=SamplingConfig(max_new_tokens=args.new_tokens))
    lm.generate([[{"role": "user", "content": "Hi"}]], sampling=SamplingConfig(max_new_tokens=2))  # warm-up
    gflop_per_token = 2 * sum(p.numel() for p in lm.model.parameters()) / 1e9
    peaks = {"float32": roofline(torch.float32), "bfloat16": roofline(torch.bfloat16)}
    rows, played = hf_rows(lm, (projection, default), tasks, cfg, args, args.batches, args.default_action_batches)
    if args.eval_tasks:
        held_out = load_scenarios("bundled:eval")[: args.eval_tasks]
        rows.append(best_of([evaluation_row(lm, default, held_out, cfg, args.seed) for _ in range(args.runs)]))
        print(rows[-1], flush=True)
    if args.bfloat16:
        half = FrozenLM.load(replace(model, dtype="bfloat16"))
        half.generate([[{"role": "user", "content": "Hi"}]], sampling=SamplingConfig(max_new_tokens=2))
        rows += hf_rows(half, (projection, default_basis(half)), tasks, cfg, args, args.batches,
                        args.default_action_batches)[0]
        del half
    if args.vllm_batches:
        started = time.perf_counter()
        engine = VLLMEngine.connect(VLLMConfig(), model_folder(model), args.vllm_dtype, lm.max_context)
        start_s = time.perf_counter() - started
        steered = FrozenLM(lm.model, lm.tokenizer, lm.name, engine=engine)
        steered.generate([[{"role": "user", "content": "Hi"}]], sampling=SamplingConfig(max_new_tokens=2))
        runs: dict[int, list[dict]] = {n: [] for n in args.vllm_batches}
        for _ in range(args.runs):
            for batch_size in args.vllm_batches:
                runs[batch_size].append(run(steered, projection, tasks, cfg, batch_size, batch_size, True,
                                            args.seed)[1])
                print(runs[batch_size][-1], flush=True)
        rows += [{**best_of(r), "vllm_dtype": args.vllm_dtype, "vllm_start_seconds": round(start_s, 1)}
                 for r in runs.values()]
        engine.close()
    base = rows[0]["dialogues_per_hour"]  # DAT's loop as the default model runs: float32
    sequential = {r["dtype"]: r["dialogues_per_hour"] for r in rows if r["batch_size"] == 1}
    for row in rows:
        dtype = row.get("vllm_dtype", row["dtype"])  # the dtype the replies are decoded in
        row["speedup_vs_sequential"] = round(row["dialogues_per_hour"] / base, 2)
        if dtype in sequential:
            row["speedup_vs_sequential_same_dtype"] = round(row["dialogues_per_hour"] / sequential[dtype], 2)
        if "generated_tokens_per_s" in row:
            row["roofline_share"] = round(row["generated_tokens_per_s"] * gflop_per_token / peaks[dtype], 4)
    ceiling = ceiling_of(lm, tasks, played, cfg, peaks, base, tuple(args.batches)) if played else None
    prompt = lm.count_tokens([{"role": "system", "content": tasks[0].agent_view(0, cfg.leave_phrase)}])
    measuring.write_result("rollout", {
        "model": lm.name, "dtype": str(lm.dtype), "tasks": "bundled", "n_tasks": len(tasks),
        "rounds": args.rounds, "new_tokens": args.new_tokens, "system_prompt_tokens_task0": prompt,
        "sampling": "temperature 0.7, top_p 0.9, repetition_penalty 1.2",
        "policy": "random actions, prefix before the reply header: through the PCA prefix (action pca) or "
        "the default per-layer behaviour basis", "gflop_per_token": round(gflop_per_token, 3),
        "roofline_gflops": {k: round(v, 1) for k, v in peaks.items()}, "rows": rows,
        "ceiling": ceiling,
        "command": "python benchmarks/rollout.py", "note": "roofline_share: generated tok/s x GFLOP/token over the "
        "best 2048x2048 matmul at the row's dtype (prefill FLOPs not counted)",
    })


if __name__ == "__main__":
    main()
