"""Could a vLLM pooling runner compute the RL state faster than the HF forward pass does? Run it with the Python
of the vLLM environment (it needs vllm; no project import):

    .venv-vllm/bin/python benchmarks/vllm_pooling.py

The state pass of a rollout reads each steered chat as it grows: a whole chat once, then a line or two per
turn on top of its cached keys and values. This plays that pattern with random token ids (only the cost is
measured): ``--rows`` chats of ``--first`` tokens, then ``--steps`` increments of ``--more`` tokens each,
and times every pass

* on vLLM's pooling runner (last-token pooling, no activation: the final-layer state), fed prompt
  embeddings as the DAT runner would, with automatic prefix caching, in bfloat16 and float32;
* on the HF model in float32 with its key/value cache (what ``FrozenLM.states`` does; equal lengths, so no
  padding), the project's reference path.

Each engine is warmed up on other chats first. Writes ``benchmarks/results/vllm_pooling.json``: seconds per
pass and new tokens per second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # dat_pipeline (no project install here)
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

from dat_pipeline import measuring  # noqa: E402

import torch  # noqa: E402

DEFAULT_MODEL = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dat-pipeline" / "models" / \
    "smollm2-135m-instruct"


def passes(first: int, more: int, steps: int) -> list[int]:
    """The chat length after each pass: the first read, then each increment."""
    return [first + more * k for k in range(steps + 1)]


def time_vllm(folder: Path, table: torch.Tensor, ids: torch.Tensor, lengths: list[int], dtype: str,
              warm: torch.Tensor) -> dict:
    from vllm import LLM
    from vllm.config import PoolerConfig

    started = time.perf_counter()
    llm = LLM(model=str(folder), runner="pooling", enable_prompt_embeds=True, enable_prefix_caching=True,
              dtype=dtype, max_model_len=2048, enforce_eager=True,
              pooler_config=PoolerConfig(pooling_type="LAST", use_activation=False))
    start_s = time.perf_counter() - started
    table = table.to(getattr(torch, dtype))

    def run(rows: torch.Tensor, length: int) -> float:
        prompts = [{"prompt_embeds": table[row[:length]]} for row in rows]
        began = time.perf_counter()
        llm.embed(prompts, use_tqdm=False)
        return time.perf_counter() - began

    for length in lengths:  # warm-up on other chats: every shape once
        run(warm, length)
    seconds = [run(ids, length) for length in lengths]
    return {"engine": f"vllm pooling ({dtype}, prefix caching)", "start_seconds": round(start_s, 1),
            **_rates(seconds, ids.shape[0], lengths)}


def time_hf(folder: Path, ids: torch.Tensor, lengths: list[int], warm: torch.Tensor) -> dict:
    from transformers import AutoModelForCausalLM, DynamicCache

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()

    @torch.no_grad()
    def run(rows: torch.Tensor) -> list[float]:
        cache, done, seconds = DynamicCache(), 0, []
        for length in lengths:
            began = time.perf_counter()
            out = model.model(input_ids=rows[:, done:length], past_key_values=cache, use_cache=True)
            out.last_hidden_state[:, -1].float()
            seconds.append(time.perf_counter() - began)
            cache, done = out.past_key_values, length
        return seconds

    run(warm)
    return {"engine": "hf float32, key/value cache", **_rates(run(ids), ids.shape[0], lengths)}


def _rates(seconds: list[float], rows: int, lengths: list[int]) -> dict:
    new = [rows * (b - a) for a, b in zip([0, *lengths], lengths, strict=False)]
    return {"seconds": [round(s, 2) for s in seconds], "new_tokens": new,
            "new_tokens_per_s": [round(n / s) for n, s in zip(new, seconds, strict=True)],
            "increments_new_tokens_per_s": round(sum(new[1:]) / sum(seconds[1:]))}


def _embedding_table(folder: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "model.safetensors"))
    return next(v for k, v in weights.items() if k.endswith("embed_tokens.weight")).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a converted model folder (safetensors)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--first", type=int, default=370)
    parser.add_argument("--more", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    folder = Path(args.model)
    table = _embedding_table(folder)  # the prompt embeddings vLLM is fed, as the DAT runner makes them
    vocab = table.shape[0]
    generator = torch.Generator().manual_seed(0)
    total = args.first + args.more * args.steps
    ids = torch.randint(0, vocab, (args.rows, total), generator=generator)
    warm = torch.randint(0, vocab, (args.rows, total), generator=generator)
    lengths = passes(args.first, args.more, args.steps)
    rows = [time_hf(folder, ids, lengths, warm)]
    print(rows[-1], flush=True)
    for dtype in ("bfloat16", "float32"):
        rows.append(time_vllm(folder, table, ids, lengths, dtype, warm))
        print(rows[-1], flush=True)
    import vllm

    measuring.write_result("vllm_pooling", {
        "vllm": vllm.__version__, "model": folder.name, "rows": args.rows, "lengths": lengths,
        "tokens": "random ids (cost only)", "results": rows,
        "command": ".venv-vllm/bin/python benchmarks/vllm_pooling.py",
    })

if __name__ == "__main__":
    main()
