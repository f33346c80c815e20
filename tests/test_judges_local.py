"""The local (G-Eval style) judge on the tiny in-code model, and once on the real default model."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from dat.judges.dimensions import DIMENSIONS, RANGES
from dat.judges.local import LABELS, LocalJudge
from dat.records import DialogueRecord, Utterance


def make_record(i: int = 0, turns: int = 2, steered: int = 0) -> DialogueRecord:
    lines = ["Would you take $80 for the bike?", "No, $150 is my final price.", "Deal at $120 then?",
             "Fine, $120. Thank you!"]
    return DialogueRecord(
        task_id=f"bike-{i}", scenario=f"A used bike sale, case {i}.", names=("Ann", "Bob"),
        backgrounds=("Ann, 30, a teacher.", "Bob, 45, a mechanic."),
        goals=("Buy the bike for at most $100.", "Sell the bike for at least $150."),
        turns=tuple(Utterance(t % 2, lines[t % len(lines)]) for t in range(turns)), steered=steered)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    return model, tokenizer


def test_scores_are_in_range_deterministic_and_complete(tiny):
    records = [make_record(0), make_record(1, turns=4, steered=1)]
    first = LocalJudge(*tiny, "tiny")(records)
    second = LocalJudge(*tiny, "tiny")(records)
    assert [j.to_dict()["scores"] for j in first] == [j.to_dict()["scores"] for j in second]
    for record, j in zip(records, first, strict=True):
        assert j.ok and (j.backend, j.model) == ("local", "tiny")
        scored = j.scores[record.steered].available()
        assert list(scored) == list(DIMENSIONS)
        for dim, value in scored.items():
            low, high = RANGES[dim]
            assert low <= value <= high
        assert j.scores[1 - record.steered].available() == {}
        assert j.usage.prompt_tokens > 0 and j.usage.completion_tokens == 0


def test_dimension_subset_and_both_agents(tiny):
    judge = LocalJudge(*tiny, "tiny", dimensions=("goal", "secret"), agents="both")
    [j] = judge([make_record()])
    assert [list(s.available()) for s in j.scores] == [["secret", "goal"], ["secret", "goal"]]
    assert j.scores[0].believability is None
    assert judge.metrics()["judge/calls"] == 1 and judge.metrics()["judge/failures"] == 0


def test_two_token_label_ten_is_scored_in_the_same_pass(tiny):
    model, tokenizer = tiny
    judge = LocalJudge(model, tokenizer, "tiny")
    # The tiny tokenizer writes "10" as "1" + "0": the judge feeds a trailing "1" to read P("0" | "1").
    assert judge._extend is not None and len(judge._labels[10]) == 2 and judge._labels[10][0] == judge._extend
    assert all(len(judge._labels[k]) == 1 for k in range(10))


def test_scores_match_separate_unpadded_passes(tiny):
    """Batched scoring with a shared, left-padded context cache equals label probabilities computed
    from one full, unpadded prompt at a time."""
    model, tokenizer = tiny
    judge = LocalJudge(model, tokenizer, "tiny", dimensions=("goal", "secret"), batch_size=8)
    records = [make_record(0, turns=1), make_record(1, turns=4)]
    judgements = judge(records)
    for record, j in zip(records, judgements, strict=True):
        for dim in ("goal", "secret"):
            prompt = judge._prompt(record, 0, dim)
            weights = []
            for label in LABELS:
                seq = judge._labels[label]
                with torch.no_grad():
                    logits = model(torch.tensor([prompt + seq])).logits[0].float()
                logp = torch.log_softmax(logits, -1)
                p = math.exp(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(seq)))
                if label == 1:  # a "1" not followed by "0"
                    p *= 1 - math.exp(float(logp[len(prompt), judge._labels[10][1]]))
                weights.append(p)
            mean = sum(k * w for k, w in zip(LABELS, weights, strict=True)) / sum(weights)
            assert j.scores[0].get(dim) == pytest.approx(RANGES[dim][0] + mean, abs=1e-4)


def test_shared_context_and_full_passes_agree(tiny):
    records = [make_record(0, turns=1), make_record(1, turns=4, steered=1), make_record(2, turns=3)]
    shared = LocalJudge(*tiny, "tiny", agents="both", batch_size=14)(records)
    full = LocalJudge(*tiny, "tiny", agents="both", batch_size=14, share_context=False)(records)
    for a, b in zip(shared, full, strict=True):
        for agent in (0, 1):
            x, y = a.scores[agent].available(), b.scores[agent].available()
            assert list(x) == list(y) == list(DIMENSIONS)
            assert all(x[d] == pytest.approx(y[d], abs=1e-4) for d in DIMENSIONS)


def test_long_transcripts_are_cut_to_the_budget(tiny):
    judge = LocalJudge(*tiny, "tiny", dimensions=("goal",), max_prompt_tokens=700)
    long = make_record(turns=40)
    prompt = judge._prompt(long, 0, "goal")
    assert 600 < len(prompt) <= 700 and tokenizer_text(judge, prompt).count("(earlier turns omitted)") == 1
    [j] = judge([long])
    assert j.ok and 0 <= j.scores[0].goal <= 10
    with pytest.raises(ValueError, match="max_prompt_tokens=200 leaves"):
        LocalJudge(*tiny, "tiny", max_prompt_tokens=200)([long])


def tokenizer_text(judge: LocalJudge, ids: list[int]) -> str:
    return judge.tokenizer.decode(ids)


def test_unknown_dimension_is_a_configuration_error(tiny):
    with pytest.raises(ValueError, match="unknown 'charm'"):
        LocalJudge(*tiny, "tiny", dimensions=("charm",))


@pytest.mark.slow
def test_default_model_scores_in_range():
    llm = pytest.importorskip("dat.lm.frozen", reason="dat.lm.frozen (FrozenLM, ModelConfig) is not in the tree yet")
    lm = llm.FrozenLM.load(llm.ModelConfig())
    judge = LocalJudge(lm.model, lm.tokenizer, lm.name, dimensions=("goal", "secret"))
    records = [make_record(0, turns=4), make_record(1, turns=4)]
    first, second = judge(records), judge(records)
    assert [j.to_dict()["scores"] for j in first] == [j.to_dict()["scores"] for j in second]
    for j in first:
        assert j.ok and 0 <= j.scores[0].goal <= 10 and -10 <= j.scores[0].secret <= 0
        # With the reply prefilled by "Score: ", a real chat model puts its next-token mass on the numbers.
        assert float(j.reasoning[0]["goal"].split("label mass ")[1].rstrip(")")) > 0.9
