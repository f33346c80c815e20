"""Build the configured judge (wrapped in the persistent cache unless disabled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dat.judges.base import Judge
from dat.judges.config import JudgeConfig

CACHE_FILE = "judgements.sqlite"


def load_causal_lm(name: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, name) for a judge model: through dat.lm.frozen when present (knows the default model's
    offline install), else straight from transformers (HF id or local folder)."""
    try:
        from dat.lm.frozen import FrozenLM, ModelConfig
    except ImportError:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name).eval()
        return model, tokenizer, name
    lm = FrozenLM.load(ModelConfig(name=name))
    return lm.model, lm.tokenizer, lm.name


def default_cache_dir() -> Path:
    """``judges/`` in the project's user cache ($XDG_CACHE_HOME/dat-pipeline, or ~/.cache/dat-pipeline)."""
    try:
        from dat.lm.loading import cache_root
    except ImportError:
        return Path("~/.cache/dat-pipeline/judges").expanduser()
    return cache_root() / "judges"


def make_judge(cfg: JudgeConfig, lm: Any = None, cache_dir: str | Path | None = None) -> Judge:
    """The judge ``cfg`` describes; ``lm`` (a FrozenLM) is reused by the local backend when
    ``cfg.local.model`` is None, and ``cache_dir`` overrides ``cfg.cache_dir``.

    >>> judge = make_judge(JudgeConfig(backend="rule", cache=False))
    >>> judge.name
    'rule'
    """
    cfg.validate()
    judge: Judge
    if cfg.backend == "api":
        try:
            from dat.judges.api import ApiJudge
        except ModuleNotFoundError as error:
            raise ModuleNotFoundError(
                f"judge=api needs the OpenAI client ({error.name} is not installed): "
                "pip install 'dat-pipeline[api]'.") from error

        judge = ApiJudge(cfg.api)
    elif cfg.backend == "local":
        from dat.judges.local import LocalJudge

        c = cfg.local
        if c.model is None and lm is not None:
            model, tokenizer, name = lm.model, lm.tokenizer, getattr(lm, "name", "frozen-lm")
        else:
            model, tokenizer, name = load_causal_lm(c.model or "smollm2-135m-instruct")
        judge = LocalJudge(model, tokenizer, name, dimensions=c.dimensions, agents=c.agents,
                           batch_size=c.batch_size, max_prompt_tokens=c.max_prompt_tokens)
    elif cfg.backend == "embedding":
        from dat.judges.embedding import EmbeddingJudge

        c = cfg.embedding
        judge = EmbeddingJudge(c.model_dir, low=c.low, high=c.high, agents=c.agents, batch_size=c.batch_size,
                               skip_restated=c.skip_restated)
    elif cfg.backend == "probe":
        from dat.judges.probe import ProbeJudge

        judge = ProbeJudge()
    else:
        from dat.judges.rule import RuleJudge

        judge = RuleJudge(cfg.rule.checks, cfg.rule.sentiment_threshold, cfg.rule.agents, cfg.rule.scenario_checks)
    if not cfg.cache:
        return judge
    from dat.judges.cache import CachedJudge

    folder = Path(cache_dir or cfg.cache_dir or default_cache_dir()).expanduser()
    return CachedJudge(judge, folder / CACHE_FILE)
