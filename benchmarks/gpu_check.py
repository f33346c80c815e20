"""One short training round and a held-out evaluation on a GPU, with a model the shape of Llama-3-8B.

    bash benchmarks/gpu_check.sh                              # on a CUDA machine (about 10 minutes on one H200)
    python benchmarks/gpu_check.py --size tiny --device cpu   # the same code path at toy size, anywhere

No weights travel and nothing is downloaded: the model is built from Llama-3-8B's shape (32 layers,
hidden 4096, 32 heads with 8 key/value heads, MLP 14336, vocabulary 128256) with random bf16 weights
and the project's tiny byte-level tokenizer and chat template (``dat.lm.tiny``). Its replies are noise;
what the check shows is that the whole pipeline (stage 1 PCA basis, lockstep rollouts with KV caches,
rule judge, TD3+BC on the GPU, paired evaluation, checkpoint and export) runs with every tensor on
the device, and how fast and in how much memory. Writes ``benchmarks/results/gpu_check.json``.
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dat_pipeline import CONF  # noqa: E402
from dat_pipeline import train as train_module  # noqa: E402

from dat.config import to_config  # noqa: E402
from dat.lm.tiny import build_tiny_model  # noqa: E402

SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, max_position_embeddings=2048),
}


def build_model(folder: Path, size: str, device: str) -> Path:
    """A random-weight Llama of the given shape in bf16, saved with the tiny tokenizer and chat template."""
    build_tiny_model(folder)  # the tokenizer and template (its 2-layer model is replaced below)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = LlamaConfig(**SHAPES[size], tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                         torch_dtype="bfloat16")
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    del model
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=list(SHAPES), default="llama3-8b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--work", default="/tmp/dat-gpu-check")
    parser.add_argument("--episodes", type=int, default=32, help="training dialogues in the round")
    parser.add_argument("--batch", type=int, default=16, help="dialogues in lockstep")
    parser.add_argument("--out", default=str(measuring.RESULTS / "gpu_check.json"))
    args = parser.parse_args()
    cuda = torch.device(args.device).type == "cuda"
    device_name = torch.cuda.get_device_name(0) if cuda and torch.cuda.is_available() else args.device
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run it where one is, or at toy size on the CPU: "
                         "python benchmarks/gpu_check.py --size tiny --device cpu")
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, on {device_name}", flush=True)
    work = Path(args.work)
    shutil.rmtree(work / "run", ignore_errors=True)  # the check's own scratch run: a re-run starts afresh
    started = time.perf_counter()
    folder = build_model(work / f"model-{args.size}", args.size, args.device)
    built = time.perf_counter() - started
    overrides = [
        f"model.name={folder}", f"model.device={args.device}", "model.dtype=bfloat16", f"algo.device={args.device}",
        "prefix=pca", "judge=rule", "logger=none", f"output_dir={work / 'run'}", "resume=false",
        "loop.rounds=1", f"loop.episodes_per_round={args.episodes}", f"loop.batch_size={args.batch}",
        "loop.eval_tasks=8", "loop.eval_per_task=1", "algo.gradient_steps_per_round=200", "loop.constant_per_task=0",
        f"model.cache_dir={work / 'cache'}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("train", overrides=overrides))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    metrics = train_module.train(cfg, output_dir=work / "run")
    result = {
        "machine": measuring.machine(),
        "device": device_name,
        "model": f"random-weight {args.size} (bf16)",
        "settings": {"episodes": args.episodes, "batch": args.batch, "max_turns": cfg.env.max_turns,
                     "max_new_tokens": cfg.env.sampling.max_new_tokens},
        "model_build_seconds": round(built, 1),
        "round_seconds": round(metrics["perf/round_seconds"], 1),
        "rollout_dialogues_per_hour": round(metrics["perf/dialogues_per_hour"], 1),
        "generated_tokens_per_s": round(metrics["perf/generated_tokens_per_s"], 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "eval_policy_minus_unsteered": metrics.get("eval/policy/diff"),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
