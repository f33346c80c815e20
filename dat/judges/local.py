"""Local LM judge, G-Eval style: each dimension's score is an expectation under the model's next token.

For every (dialogue, agent, dimension) the model reads the scenario, both backgrounds and goals, the
transcript, and a question asking for that dimension on a 0..10 scale whose ends are spelled out (for
secret, 0 = fully revealed and 10 = nothing revealed); its reply is prefilled with "Score: " so that
nearly all next-token mass falls on numbers (a 135M model otherwise starts with prose).

One forward pass gives the next-token probabilities of the labels "0".."10"; they are renormalised
over the labels and the score is ``low + (high - low) * E[label] / 10`` on the dimension's own range
(every range is 10 wide, so one label step is one point). Tokenizers that split "10" into "1" + "0"
are handled in the same pass: the prompt is fed with a trailing "1", so the last two positions give
P(first token) and P("0" | "1"); then P("10") = P("1") P("0" | "1") and P("1") = P("1") (1 - P("0" | "1")).
There is no text to parse, so a judgement never fails on format, and the same inputs give the same scores.

The context (everything before the question) is the same for all questions about one dialogue, so it is
encoded once and its key/value cache is shared by the questions: 7 dimensions cost about one context
pass plus seven short question passes, not seven full passes. Models without a reusable cache fall back
to full passes (same scores up to float rounding).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from dat.judges.base import JudgeStats, agent_indices, settings_hash
from dat.judges.dimensions import DESCRIPTIONS, DIMENSIONS, HIGH_ANCHOR, LOW_ANCHOR, RANGES
from dat.judges.judgement import AgentScores, Judgement, Usage
from dat.records import DialogueRecord

PROMPT_VERSION = "geval-v1"
LABELS = tuple(range(11))
SYSTEM = "You are an impartial judge of social conversations. You answer with a single number."
_MARK = "\x00QUESTION\x00"


class LocalJudge:
    """Scores chosen dimensions with any Hugging Face causal LM; batched over dialogues x dimensions.

    >>> # judge = LocalJudge(lm.model, lm.tokenizer, "smollm2-135m-instruct", dimensions=("goal",))
    >>> # judge(records)[0].scores[records[0].steered].goal   # e.g. 6.83, always in 0..10
    """

    name = "local"

    def __init__(self, model: Any, tokenizer: Any, model_name: str, dimensions: Sequence[str] = DIMENSIONS,
                 agents: str = "steered", batch_size: int = 8, max_prompt_tokens: int = 1536,
                 share_context: bool = True) -> None:
        for d in dimensions:
            if d not in RANGES:
                raise ValueError(f"judge.local.dimensions: unknown {d!r}; valid: {', '.join(DIMENSIONS)}")
        self.lm, self.tokenizer, self.model = model, tokenizer, model_name
        self.dimensions, self.agents = tuple(dimensions), agents
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        self.share_context = share_context
        settings = [self.dimensions, agents, max_prompt_tokens]
        self.version = f"local-{PROMPT_VERSION}:" + settings_hash(settings)
        self.stats = JudgeStats()
        self._chat = bool(getattr(tokenizer, "chat_template", None))
        self._pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._answer = "Score: "
        self._plan_labels()

    def _split(self, context: str, question: str, answer: str | None = None) -> tuple[str, str]:
        """Prompt text in two parts: the shared context, and the question up to the score label."""
        answer = self._answer if answer is None else answer
        user = f"{context}\n\n{_MARK}"
        if self._chat:
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"{SYSTEM}\n\n{user}\n"
        before, after = text.split(_MARK)
        return before, question + after + answer

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _plan_labels(self) -> None:
        """Find each label's token ids in context, and the shared first token of two-token labels.

        The reply is prefilled with "Score: " (the label follows the space) or, for tokenizers that fuse a
        space with a digit, "Score:" (the label carries the space); the first that tokenizes cleanly wins.
        """
        for answer, space in (("Score: ", ""), ("Score:", " ")):
            anchor = self._split("x", "x", answer)[1]
            base = self._ids(anchor)
            fulls = [self._ids(anchor + space + str(label)) for label in LABELS]
            seqs = [full[len(base):] for full in fulls]
            firsts = {seq[0] for seq in seqs if len(seq) == 2}
            if (all(full[:len(base)] == base and 1 <= len(full) - len(base) <= 2 for full in fulls)
                    and len(firsts) <= 1 and len({tuple(q) for q in seqs}) == len(LABELS)):
                self._answer, self._labels = answer, seqs
                self._extend = firsts.pop() if firsts else None
                return
        raise ValueError(f"judge.local: the tokenizer of {self.model!r} writes the score labels 0..10 in a "
                         "way this judge cannot read in one pass; choose another judge model")

    def _parts(self, record: DialogueRecord) -> tuple[list[int], list[tuple[int, str, list[int]]]]:
        """Token ids of the shared context and of each (agent, dimension) question, within the budget."""
        questions = []
        for agent in agent_indices(record, self.agents):
            for dim in self.dimensions:
                question = (
                    f"Question: rate {record.names[agent]}'s {dim.replace('_', ' ')} in this conversation. "
                    f"{DESCRIPTIONS[dim]} Use a scale from 0 to 10, where 0 means {LOW_ANCHOR[dim]} and "
                    f"10 means {HIGH_ANCHOR[dim]}. Answer with one integer from 0 to 10."
                )
                questions.append((agent, dim, question))
        suffixes = [(a, d, self._ids(self._split("", q)[1]) + self._tail()) for a, d, q in questions]
        budget = self.max_prompt_tokens - max(len(s) for _, _, s in suffixes)
        if budget < 64:
            raise ValueError(f"judge.local.max_prompt_tokens={self.max_prompt_tokens} leaves {budget} tokens "
                             "for the dialogue after the question; raise it")
        for first in range(len(record.turns) + 1):
            shown = replace(record, turns=record.turns[first:])
            lines = ("(earlier turns omitted)\n" if first else "") + (shown.transcript() or "(no one spoke)")
            context = (
                f"Scenario: {record.scenario}\n"
                f"{record.names[0]}'s background: {record.backgrounds[0]}\n"
                f"{record.names[1]}'s background: {record.backgrounds[1]}\n"
                f"{record.names[0]}'s goal: {record.goals[0]}\n"
                f"{record.names[1]}'s goal: {record.goals[1]}\n\n"
                f"Conversation:\n{lines}"
            )
            prefix = self._ids(self._split(context, "")[0])
            if len(prefix) <= budget or first >= len(record.turns):
                break
        return prefix[-budget:], suffixes

    def _tail(self) -> list[int]:
        return [self._extend] if self._extend is not None else []

    def _prompt(self, record: DialogueRecord, agent: int, dim: str) -> list[int]:
        """The full prompt of one question (context + question, without the trailing label token)."""
        prefix, suffixes = self._parts(record)
        suffix = next(s for a, d, s in suffixes if (a, d) == (agent, dim))
        return prefix + suffix[:len(suffix) - len(self._tail())]

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]:
        parts = [self._parts(r) for r in records]
        values: list[list[dict[str, float]]] = [[{}, {}] for _ in records]
        notes: list[list[dict[str, str]]] = [[{}, {}] for _ in records]
        cost = [[0, 0.0] for _ in records]
        errors: dict[int, str] = {}
        per_record = max(1, self.batch_size // max(1, len(parts[0][1]) if parts else 1))
        for start in range(0, len(records), per_record):
            chunk = list(range(start, min(start + per_record, len(records))))
            t0 = time.perf_counter()
            try:
                questions = [[s for _, _, s in parts[i][1]] for i in chunk]
                results = self._score([parts[i][0] for i in chunk], questions)
            except Exception as err:  # a broken batch fails its dialogues, not the run
                for i in chunk:
                    errors[i] = f"error: {type(err).__name__}: {err}"
                continue
            share = (time.perf_counter() - t0) / len(chunk)
            for i, (expected, mass) in zip(chunk, results, strict=True):
                prefix, suffixes = parts[i]
                for (agent, dim, _), e, m in zip(suffixes, expected, mass, strict=True):
                    low, high = RANGES[dim]
                    e = min(max(e, 0.0), 10.0)
                    values[i][agent][dim] = low + (high - low) * e / 10.0
                    notes[i][agent][dim] = f"expected label {e:.2f} of 0..10 (label mass {m:.2f})"
                cost[i] = [len(prefix) + sum(len(s) for _, _, s in suffixes), share]
        out = []
        for i in range(len(records)):
            usage = Usage(prompt_tokens=cost[i][0], latency_s=cost[i][1])
            if i in errors:
                judgement = Judgement.failed(errors[i], self.name, self.model, self.version, usage)
            else:
                judgement = Judgement(
                    scores=(AgentScores(**values[i][0]), AgentScores(**values[i][1])),
                    reasoning=(_ordered(notes[i][0]), _ordered(notes[i][1])), backend=self.name,
                    model=self.model, version=self.version, usage=usage)
            self.stats.record(judgement)
            out.append(judgement)
        return out

    def metrics(self) -> dict[str, float]:
        return self.stats.metrics()

    @torch.inference_mode()
    def _score(self, prefixes: list[list[int]], suffixes: list[list[list[int]]]) -> list[tuple[list, list]]:
        """Per dialogue: expected label (0..10) and label probability mass of each of its questions."""
        k = len(suffixes[0])
        flat = [s for group in suffixes for s in group]
        keep = 1 + len(self._tail())
        logits = None
        if self.share_context:
            try:
                logits = self._forward_shared(prefixes, flat, k, keep)
            except (TypeError, AttributeError, NotImplementedError, ValueError):
                self.share_context = False  # this model cannot reuse a cache: full passes from now on
        if logits is None:
            pairs = zip(prefixes, suffixes, strict=True)
            logits = self._forward([p + s for p, group in pairs for s in group], keep)
        expected, mass = self._expectation(torch.softmax(logits[:, -keep:].float(), dim=-1))
        return [(expected[j * k:(j + 1) * k], mass[j * k:(j + 1) * k]) for j in range(len(prefixes))]

    def _padded(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.lm.parameters()).device
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[self._pad] * (width - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
        return ids, mask

    def _call(self, keep: int, **inputs: Any) -> Any:
        try:
            return self.lm(**inputs, logits_to_keep=keep)
        except TypeError:  # older or custom models without logits_to_keep
            return self.lm(**inputs)

    def _forward(self, prompts: list[list[int]], keep: int) -> torch.Tensor:
        ids, mask = self._padded(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return self._call(keep, input_ids=ids, attention_mask=mask, position_ids=positions).logits

    def _forward_shared(self, prefixes: list[list[int]], flat: list[list[int]], k: int,
                        keep: int) -> torch.Tensor:
        """Encode each context once, repeat its cache for its k questions, then run only the questions."""
        ids, mask = self._padded(prefixes)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._call(1, input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        cache = out.cache
        cache.batch_repeat_interleave(k)
        q_ids, q_mask = self._padded(flat)
        full_mask = torch.cat([mask.repeat_interleave(k, dim=0), q_mask], dim=1)
        q_positions = mask.sum(-1).repeat_interleave(k).unsqueeze(1) + (q_mask.cumsum(-1) - 1).clamp(min=0)
        return self._call(keep, input_ids=q_ids, attention_mask=full_mask, position_ids=q_positions,
                          cache=cache, use_cache=True).logits

    def _expectation(self, probs: torch.Tensor) -> tuple[list[float], list[float]]:
        """Expected label and label mass; probs[:, 0] = P(first token), probs[:, -1] = P(next | "1")."""
        first, second = probs[:, 0], probs[:, -1]
        cont = [s[1] for s in self._labels if len(s) == 2]
        weights = []
        for seq in self._labels:
            if len(seq) == 2:
                weights.append(first[:, seq[0]] * second[:, seq[1]])
            elif seq[0] == self._extend:
                weights.append(first[:, seq[0]] * (1 - second[:, cont].sum(-1)))
            else:
                weights.append(first[:, seq[0]])
        w = torch.stack(weights, dim=-1).double()
        mass = w.sum(-1)
        labels = torch.tensor(LABELS, dtype=w.dtype, device=w.device)
        expected = (w * labels).sum(-1) / mass.clamp(min=1e-30)
        return expected.tolist(), mass.tolist()


def _ordered(notes: dict[str, str]) -> dict[str, str]:
    return {d: notes[d] for d in DIMENSIONS if d in notes}
