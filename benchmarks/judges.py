"""Judge throughput: dialogues judged per second by the local (default model), embedding and rule judges.

Synthetic bike-sale dialogues of 6 turns (about 480 prompt tokens per local-judge question). The local
judge asks one question per dimension, so a dialogue costs 7 forward passes of the default model with
all dimensions and 1 with ``goal`` only. No cache: every dialogue is judged. Writes results/judges.json.
"""

from __future__ import annotations

from dat_pipeline import measuring

import argparse
import time

from dat.judges.embedding import EmbeddingJudge  # noqa: E402
from dat.judges.local import LocalJudge  # noqa: E402
from dat.judges.rule import RuleJudge  # noqa: E402
from dat.lm.frozen import FrozenLM  # noqa: E402
from dat.lm.loading import ModelConfig  # noqa: E402
from dat.records import DialogueRecord, Utterance  # noqa: E402

LINES = [
    "Hi! I saw your listing for the road bike. Is it still available, and would you take $90 for it?",
    "It is still available. It's a 2019 Trek, recently serviced, so I'm asking $180.",
    "That is above my budget. The tyres look worn; could you come down to $110?",
    "The tyres are only a year old. I could do $150 if you pick it up today.",
    "I can pick it up this afternoon. Would $120 work if I pay cash?",
    "Alright, $120 in cash and it's yours. Deal!",
]


def records(n: int) -> list[DialogueRecord]:
    return [DialogueRecord(
        task_id=f"bench-{i}", scenario=f"Two strangers negotiate the sale of a used road bike (case {i}).",
        names=("Maya Chen", "Tom Reyes"),
        backgrounds=("Maya Chen, 34, graphic designer; friendly but stubborn; on a tight budget.",
                     "Tom Reyes, 41, nurse; moving abroad next month. Secret: the frame was repainted."),
        goals=("Buy the bike for at most $110.", "Sell the bike for at least $140."),
        turns=tuple(Utterance(t % 2, LINES[t]) for t in range(len(LINES))), steered=i % 2,
        checks=({"agent": 0, "kind": "price", "at_most": 110}, {"agent": 1, "kind": "price", "at_least": 140},
                {"kind": "sentiment", "target": "positive"}),
    ) for i in range(n)]


def measure(judge, batch: list[DialogueRecord]) -> dict:
    judge(batch[:1])  # warm-up (lazy imports, first kernels)
    start = time.perf_counter()
    out = judge(batch)
    seconds = time.perf_counter() - start
    assert all(j.ok for j in out), [j.cause for j in out if not j.ok]
    tokens = sum(j.usage.prompt_tokens for j in out)
    return {"dialogues": len(batch), "seconds": round(seconds, 3),
            "calls_per_s": round(len(batch) / seconds, 3),
            "prompt_tokens_per_s": round(tokens / seconds, 1) if tokens else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local-dialogues", type=int, default=4)
    args = parser.parse_args()
    result: dict = {}
    start = time.perf_counter()
    lm = FrozenLM.load(ModelConfig())
    result["local_load_s"] = round(time.perf_counter() - start, 2)
    for label, dims in (("local_all_dimensions", None), ("local_goal_only", ("goal",))):
        kwargs = {"dimensions": dims} if dims else {}
        judge = LocalJudge(lm.model, lm.tokenizer, lm.name, batch_size=8, **kwargs)
        result[label] = {"model": lm.name, **measure(judge, records(args.local_dialogues))}
        print(label, result[label])
    start = time.perf_counter()
    embedding = EmbeddingJudge()
    result["embedding_load_s"] = round(time.perf_counter() - start, 2)
    result["embedding"] = {"model": embedding.model, **measure(embedding, records(64))}
    result["rule"] = {"model": "rules", **measure(RuleJudge(), records(500))}
    print("embedding", result["embedding"], "\nrule", result["rule"])
    measuring.write_result("judges", result)


if __name__ == "__main__":
    main()
