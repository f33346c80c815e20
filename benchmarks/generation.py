"""Generation throughput of the default model: batch 1 vs 8, with and without prefixes, and load time;
then prefill and decode timed apart, in float32 and bfloat16, to say where each dtype pays; and the RL
state read through the key/value cache against a plain prefill of the same tokens.

Prompt about 280 tokens (persona + five turns), 64 new tokens (min = max, so every run generates the
same number), greedy. tokens/s = generated tokens / wall time of the call (prefill included). The split:
prefill = one forward pass over the batch's prompts (prompt tokens/s); decode = the rest of a
``generate`` call over the same prompts (generated tokens/s).
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from dat.lm import kvcache  # noqa: E402
from dat.lm.frozen import FrozenLM, SamplingConfig  # noqa: E402
from dat.lm.loading import ModelConfig  # noqa: E402

PERSONA = (
    "You are Maya Chen, 34, a graphic designer who rides to work every day. You want to buy a used road bike "
    "for at most $100 because your budget is tight this month, but you care about safety and want the brakes "
    "checked. You are friendly, a little stubborn, and you always ask follow-up questions before you agree to "
    "anything. Reply in one or two short sentences. The seller is a stranger you met through an online "
    "marketplace listing; you have never met before and you are meeting at a cafe near the station."
)
TURNS = [
    ("user", "Hi! The bike is a 2019 Trek, recently serviced, and I'm asking $180 for it. It has new tyres."),
    ("assistant", "Thanks for meeting me. It looks nice, but $180 is far above my budget. "
                  "Has the chain been replaced?"),
    ("user", "The chain is new, and the brakes were adjusted last week. I could go down to $160 if you decide today."),
    ("assistant", "I appreciate that. Could you tell me why you are selling it, and whether there are any scratches?"),
    ("user", "I'm moving abroad next month, so it has to go. There is one small scratch on the frame, nothing else."),
]


def dialogue() -> list[dict[str, str]]:
    return [{"role": "system", "content": PERSONA}, *({"role": r, "content": c} for r, c in TURNS)]


def tokens_per_second(lm: FrozenLM, batch: int, prefix: bool, new_tokens: int, repeats: int) -> float:
    dialogues = [dialogue()] * batch
    prefixes = [torch.randn(2, lm.hidden_size) * 3 for _ in range(batch)] if prefix else None
    sampling = SamplingConfig(do_sample=False, max_new_tokens=new_tokens, repetition_penalty=1.2)
    config = lm._generation_config(sampling)
    config.min_new_tokens = new_tokens
    lm.generate(dialogues[:1], sampling=SamplingConfig(do_sample=False, max_new_tokens=4))  # warm-up
    times = []
    for _ in range(repeats):
        batch_data = lm._splice([lm.encode(d) for d in dialogues], prefixes, "start")
        start = time.perf_counter()
        with torch.no_grad():
            out = lm.model.generate(inputs_embeds=batch_data.embeds, attention_mask=batch_data.attention_mask,
                                    generation_config=config, logits_processor=lm._processors(sampling))
        times.append(time.perf_counter() - start)
        assert out.shape[1] == new_tokens
    return batch * new_tokens / min(times)


def prefill_decode(lm: FrozenLM, batch: int, new_tokens: int) -> dict:
    """Prefill and decode rates of one batch (best of two calls each), prefill read off a whole generate."""
    ids = [lm.encode(dialogue())] * batch
    data = lm._splice(ids, None, "start")
    sampling = SamplingConfig(do_sample=False, max_new_tokens=new_tokens, repetition_penalty=1.2)
    config = lm._generation_config(sampling)
    config.min_new_tokens = new_tokens
    prefill = best_seconds(lambda: _forward(lm, data))
    whole = best_seconds(lambda: lm.model.generate(inputs_embeds=data.embeds, attention_mask=data.attention_mask,
                                                   generation_config=config, logits_processor=lm._processors(sampling)))
    decode = max(whole - prefill, 1e-9)
    return {"dtype": str(lm.dtype).removeprefix("torch."), "batch": batch, "prompt_tokens": len(ids[0]),
            "prefill_s": round(prefill, 2), "prefill_tokens_per_s": round(batch * len(ids[0]) / prefill, 1),
            "decode_s": round(decode, 2), "decode_tokens_per_s": round(batch * new_tokens / decode, 1)}


def best_seconds(call, repeats: int = 2) -> float:
    """The shortest wall time of ``repeats`` calls, without gradients."""
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return min(times)


def _forward(lm: FrozenLM, data) -> None:
    """One plain forward pass over a spliced batch (the prefill, without decoding)."""
    lm.model(inputs_embeds=data.embeds, attention_mask=data.attention_mask, position_ids=data.position_ids,
             logits_to_keep=1)


def states_vs_prefill(lm: FrozenLM, batch: int) -> dict:
    """Prompt tokens/s of ``FrozenLM.states`` through empty caches (the whole chat read by the cached path)
    and of a plain forward over the same tokens: the state path should cost no more per token."""
    dialogues = [[*dialogue()[:-1], {"role": "user", "content": f"{TURNS[-1][1]} ({i})"}] for i in range(batch)]
    tokens = sum(lm.count_tokens(d) for d in dialogues)
    data = lm._splice([lm.encode(d) for d in dialogues], None, "start")
    plain = best_seconds(lambda: _forward(lm, data))
    cached = best_seconds(lambda: lm.states(dialogues, caches=[kvcache.Cached() for _ in dialogues]))
    return {"batch": batch, "prompt_tokens": tokens, "plain_prefill_tokens_per_s": round(tokens / plain, 1),
            "states_cached_path_tokens_per_s": round(tokens / cached, 1),
            "states_cost_vs_prefill": round(cached / plain, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--split-batch", type=int, default=16, help="batch of the prefill/decode split")
    args = parser.parse_args()
    lm = FrozenLM.load(ModelConfig())  # converts on first use, so the timed load below is from the cache
    start = time.perf_counter()
    lm = FrozenLM.load(ModelConfig())
    load_s = time.perf_counter() - start
    prompt_tokens = lm.count_tokens(dialogue())
    rows = []
    for batch in (1, 8):
        for prefix in (False, True):
            tps = tokens_per_second(lm, batch, prefix, args.new_tokens, args.repeats)
            rows.append({"batch": batch, "prefix": prefix, "tokens_per_s": round(tps, 2)})
            print(rows[-1], flush=True)
    states = states_vs_prefill(lm, args.split_batch)
    print(states, flush=True)
    split = []
    for dtype in ("float32", "bfloat16"):
        split.append(prefill_decode(FrozenLM.load(ModelConfig(dtype=dtype)), args.split_batch, args.new_tokens))
        print(split[-1], flush=True)
    measuring.write_result("generation", {
        "model": lm.name, "dtype": str(lm.dtype), "prompt_tokens": prompt_tokens,
        "new_tokens": args.new_tokens, "load_from_cache_s": round(load_s, 2), "rows": rows,
        "prefill_decode": split, "states_vs_prefill": states, "command": "python benchmarks/generation.py",
    })


if __name__ == "__main__":
    main()
