"""Rollout throughput of the default model: dialogues one at a time (batch-1 generation, as DAT's code
runs them) vs the batched lockstep runner with N dialogues per generation call.

Every condition plays the same episodes (same seeds, so the same tasks and sides) from the bundled
scenario set: ``--dialogues`` dialogues of ``--rounds`` rounds, random actions through the PCA
up-projection, sampled decoding (the collection default) capped at ``--new-tokens`` tokens per
utterance. The judge is a constant (judging cost is not part of this measurement). The sequential
run reads every chat whole at every turn, as DAT's code does; the batched runs keep each chat's
keys and values between turns (``env.kv_cache``, the default), and one batched run without that
cache separates the two gains. Reported per condition: wall time, dialogues/hour, generated
tokens/s (tokens of the utterances actually produced, prefill included in the time), and the machine
load around it.
"""

from __future__ import annotations

import argparse  # noqa: E402
import os  # noqa: E402
from dataclasses import replace  # noqa: E402

import common  # noqa: F401  (CPU settings before torch)

from dat.action.projection import PrefixConfig, build_projection  # noqa: E402
from dat.dialogue.rollout import collect  # noqa: E402
from dat.dialogue.rules import EnvConfig  # noqa: E402
from dat.lm.frozen import FrozenLM, SamplingConfig  # noqa: E402
from dat.lm.loading import ModelConfig, artefact_folder  # noqa: E402
from envs.scenarios import load_scenarios  # noqa: E402
from envs.vector_env import collector_envs  # noqa: E402


def constant_judge(records):
    return [0.0] * len(records)


def run(lm, projection, tasks, cfg, n, batch_size, kv_cache, seed) -> dict:
    load_before = os.getloadavg()[0]
    stats: dict[str, float] = {}
    envs = collector_envs(lm, projection, tasks, constant_judge, replace(cfg, kv_cache=kv_cache), episodes=n,
                          batch_size=batch_size)
    episodes = collect(envs, "random", n, seed, stats=stats)
    return {
        "batch_size": batch_size,
        "kv_cache": kv_cache,
        "dialogues": len(episodes),
        "seconds": round(stats["perf/rollout_seconds"], 1),
        "dialogues_per_hour": round(stats["perf/dialogues_per_hour"], 1),
        "generated_tokens": int(stats["perf/generated_tokens"]),
        "generated_tokens_per_s": round(stats["perf/generated_tokens_per_s"], 2),
        "generate_calls": int(stats["perf/generate_calls"]),
        "utterances": int(stats["perf/utterances"]),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16], help="batched runs (with kv cache)")
    parser.add_argument("--uncached-batch", type=int, default=16, help="batched run without kv cache (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = ModelConfig()
    lm = FrozenLM.load(model)
    projection = build_projection(lm.model.get_input_embeddings().weight, PrefixConfig(), artefact_folder(model))
    tasks = load_scenarios("bundled")
    cfg = EnvConfig(max_turns=args.rounds, sampling=SamplingConfig(max_new_tokens=args.new_tokens))
    lm.generate([[{"role": "user", "content": "Hi"}]], sampling=SamplingConfig(max_new_tokens=2))  # warm-up
    rows = []
    plan = [(1, False)] + [(args.uncached_batch, False)] * bool(args.uncached_batch) + [(b, True) for b in args.batches]
    for batch_size, kv_cache in plan:
        rows.append(run(lm, projection, tasks, cfg, args.dialogues, batch_size, kv_cache, args.seed))
        print(rows[-1], flush=True)
    base = rows[0]["dialogues_per_hour"]
    for row in rows:
        row["speedup_vs_sequential"] = round(row["dialogues_per_hour"] / base, 2)
    prompt = lm.count_tokens([{"role": "system", "content": tasks[0].agent_view(0, cfg.leave_phrase)}])
    common.write_result("rollout", {
        "model": lm.name, "dtype": str(lm.dtype), "tasks": "bundled", "n_tasks": len(tasks),
        "rounds": args.rounds, "new_tokens": args.new_tokens, "system_prompt_tokens_task0": prompt,
        "sampling": "temperature 0.7, top_p 0.9, repetition_penalty 1.2", "policy": "random (PCA prefix)",
        "rows": rows,
    })


if __name__ == "__main__":
    main()
