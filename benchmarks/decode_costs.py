"""What the batched decode loop pays besides the model: the cache's growth and the top-p draw, A/B in one run.

One batch of chats (the generation benchmark's bike-sale dialogue, each with its own last line) is read
into the per-agent caches once; then the same steered, sampled generation call (per-layer prefix before
the reply header, T 0.7, top-p 0.9, repetition penalty 1.2, every row made to generate ``--new-tokens``)
is timed four ways:

* cache: ``reserved`` (``dat.lm.kvcache.ReservedLayer``: new keys and values written into room kept after
  the batch cache) or ``concatenating`` (transformers' ``DynamicCache``: the layer's whole cache copied at
  every generated token);
* sampler: ``nucleus`` (``dat.lm.nucleus.NucleusSampler``, a greedy pick of its draw) or ``transformers``
  (``TopPLogitsWarper`` sorting the vocabulary, then ``torch.multinomial`` over it);
* fast paths (``dat.lm.fastpaths``): on (shared key/value heads inside torch's attention, a contiguous
  LM-head input) or off (transformers' defaults: heads copied for every masked read of several tokens,
  the last position's logits from a strided view), timed with the first cache and sampler only.

The first of each pair is what ``FrozenLM.generate`` does; the table says what each costs. Best of
``--repeats`` calls each, the variants taking turns.
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import replace  # noqa: E402
from unittest import mock  # noqa: E402

import torch  # noqa: E402
from generation import TURNS, dialogue  # noqa: E402
from transformers import DynamicCache, LogitsProcessorList  # noqa: E402

from dat.lm import fastpaths, kvcache  # noqa: E402
from dat.lm.frozen import FrozenLM, SamplingConfig  # noqa: E402
from dat.lm.loading import ModelConfig  # noqa: E402

SAMPLING = SamplingConfig(temperature=0.7, top_p=0.9, repetition_penalty=1.2)


@contextmanager
def variant(lm: FrozenLM, cache: str, sampler: str, new_tokens: int):
    """``lm.generate`` with the given cache and sampler, every row generating exactly ``new_tokens``."""
    config, processors = lm._generation_config, lm._processors

    def fixed_length(s):
        c = config(s)
        if sampler == "transformers":
            c.do_sample, c.temperature, c.top_p, c.top_k = True, s.temperature, s.top_p, 0
        c.min_new_tokens = c.max_new_tokens = new_tokens
        return c

    def penalty_only(s):
        return LogitsProcessorList(processors(s)[:-1]) if sampler == "transformers" else processors(s)

    assemble, used = kvcache.assemble, []

    def concatenating(*args, **kwargs):
        reserved, mask, positions = assemble(*args, **kwargs)
        used.append(True)
        return DynamicCache(ddp_cache_data=[(layer.keys, layer.values) for layer in reserved.layers]), mask, positions

    with mock.patch.object(lm, "_generation_config", fixed_length), mock.patch.object(lm, "_processors", penalty_only):
        if cache == "concatenating":
            with mock.patch.object(kvcache, "assemble", concatenating):
                yield
            assert used, "the concatenating cache was used"
        else:
            yield


def without_fastpaths(lm: FrozenLM) -> None:
    """Put back transformers' SDPA attention and the LM head's plain input (what ``fastpaths.apply`` changed)."""
    lm.model.set_attn_implementation("sdpa")
    head = lm.model.get_output_embeddings()
    head._forward_pre_hooks.clear()
    head._dat_contiguous_input = False
    assert lm.model.config._attn_implementation == "sdpa"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    lm = FrozenLM.load(ModelConfig())
    chats = [[*dialogue()[:-1], {"role": "user", "content": f"{TURNS[-1][1]} ({i})"}] for i in range(args.batch)]
    caches = [kvcache.Cached() for _ in chats]
    torch.manual_seed(0)
    layers = lm.model.config.num_hidden_layers
    prefixes = [torch.randn(layers, 2, lm.hidden_size) * 0.05 for _ in chats]
    sampling = replace(SAMPLING, max_new_tokens=args.new_tokens)
    lm.generate(chats, prefixes, sampling, "before_reply", caches=caches)  # reads the chats into the caches
    variants = [*((c, s, True) for c in ("reserved", "concatenating") for s in ("nucleus", "transformers")),
                ("reserved", "nucleus", False)]
    times: dict[tuple, list[float]] = {v: [] for v in variants}
    for seed in range(args.repeats):  # each variant once per round: a machine that drifts slows all alike
        for cache, sampler, fast in variants:
            if fast:
                fastpaths.apply(lm.model)
            else:
                without_fastpaths(lm)
            with variant(lm, cache, sampler, args.new_tokens):
                start = time.perf_counter()
                out = lm.generate(chats, prefixes, sampling, "before_reply", seed=seed, caches=caches)
                times[cache, sampler, fast].append(time.perf_counter() - start)
            assert all(out), "every row generates"
    rows = [{"cache": cache, "sampler": sampler, "fastpaths": fast, "seconds": round(min(t), 2),
             "seconds_each": [round(x, 2) for x in t],
             "generated_tokens_per_s": round(args.batch * args.new_tokens / min(t), 1)}
            for (cache, sampler, fast), t in times.items()]
    for row in rows:
        print(row, flush=True)
    measuring.write_result("decode_costs", {
        "model": lm.name, "dtype": str(lm.dtype), "batch": args.batch, "chat_tokens": lm.count_tokens(chats[0]),
        "new_tokens": args.new_tokens, "sampling": "temperature 0.7, top_p 0.9, repetition_penalty 1.2",
        "prefix": "per-layer, 2 tokens, before the reply header", "rows": rows,
        "command": "python benchmarks/decode_costs.py",
    })


if __name__ == "__main__":
    main()
