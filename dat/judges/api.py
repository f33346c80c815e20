"""LLM judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, a llama.cpp server).

The client's own retries are off (``max_retries=0``): this module retries timeouts, connection errors,
429 and 5xx itself, with exponential backoff (honouring Retry-After up to ``backoff_max_s``), so it can
count them. Other HTTP errors and unusable replies fail the judgement at once with the cause. Nothing
raises past ``__call__``; only a bad configuration (e.g. an unset API-key variable) raises, at construction.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

from dat.judges.base import JudgeStats, settings_hash
from dat.judges.config import ApiJudgeConfig
from dat.judges.judgement import Judgement, Usage
from dat.judges.prompt import PROMPT_VERSION, ReplyError, build_prompt, parse_reply
from dat.records import DialogueRecord


class ApiJudge:
    """Sotopia-style judge: one chat request per dialogue, JSON scores for both agents.

    >>> judge = ApiJudge(ApiJudgeConfig(base_url="http://127.0.0.1:8000/v1", model="qwen", api_key_env=""))
    >>> # judgements = judge(records)  # one request per record, up to cfg.concurrency at once
    >>> judge.name, judge.model
    ('api', 'qwen')
    """

    name = "api"

    def __init__(self, cfg: ApiJudgeConfig, client: Any = None) -> None:
        self.cfg = cfg
        self.model = cfg.model
        settings = [cfg.temperature, cfg.max_tokens, cfg.json_mode, cfg.base_url.rstrip("/")]  # the server too
        self.version = f"api-{PROMPT_VERSION}:" + settings_hash(settings)
        self._key = ""
        if cfg.api_key_env:
            if cfg.api_key_env not in os.environ:
                raise ValueError(
                    f"judge.api.api_key_env: environment variable {cfg.api_key_env} is not set; export it, "
                    "or set judge.api.api_key_env='' for a server that needs no key")
            self._key = os.environ[cfg.api_key_env]
        self.client = client or openai.OpenAI(base_url=cfg.base_url, api_key=self._key or "EMPTY",
                                              timeout=cfg.timeout_s, max_retries=0)
        self.stats = JudgeStats()

    def __call__(self, records: Sequence[DialogueRecord]) -> list[Judgement]:
        if not records:
            return []
        with ThreadPoolExecutor(max_workers=min(self.cfg.concurrency, len(records))) as pool:
            return list(pool.map(self._judge_one, records))

    def metrics(self) -> dict[str, float]:
        return self.stats.metrics()

    def _judge_one(self, record: DialogueRecord) -> Judgement:
        start = time.perf_counter()
        try:
            judgement = self._request_and_parse(record, start)
        except Exception as err:  # never let one dialogue break a batch
            judgement = self._failed(f"error: {type(err).__name__}: {err}", start, 0)
        self.stats.record(judgement)
        return judgement

    def _request_and_parse(self, record: DialogueRecord, start: float) -> Judgement:
        kwargs: dict[str, Any] = {
            "model": self.cfg.model, "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens,
            "messages": [{"role": "user", "content": build_prompt(record)}],
        }
        if self.cfg.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        retries = 0
        while True:
            left = self.cfg.budget_s - (time.perf_counter() - start)
            try:
                response = self.client.chat.completions.create(**kwargs, timeout=max(0.1, min(self.cfg.timeout_s,
                                                                                              left)))
                break
            except openai.APIStatusError as err:
                transient = err.status_code == 429 or err.status_code >= 500
                cause = f"http {err.status_code}: {_message(err)}"
                wait = _retry_after(err)
            except openai.APITimeoutError:
                transient, cause, wait = True, "timeout", None
            except openai.APIConnectionError as err:
                transient, cause, wait = True, f"connection error: {err}", None
            backoff = min(self.cfg.backoff_s * 2**retries if wait is None else wait, self.cfg.backoff_max_s)
            if not transient or retries >= self.cfg.max_retries:
                return self._failed(cause, start, retries)
            if time.perf_counter() - start + backoff >= self.cfg.budget_s:
                return self._failed(f"{cause}; gave up after {time.perf_counter() - start:.0f} s "
                                    f"(judge.api.budget_s={self.cfg.budget_s:g})", start, retries)
            time.sleep(backoff)
            retries += 1
        usage = getattr(response, "usage", None)
        tokens = {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                  "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)}
        text = (response.choices[0].message.content or "") if response.choices else ""
        if response.choices and getattr(response.choices[0], "finish_reason", None) == "length":
            return self._failed(f"the reply was cut at judge.api.max_tokens={self.cfg.max_tokens} tokens "
                                "(finish_reason=length); raise judge.api.max_tokens", start, retries, **tokens)
        try:
            scores, reasoning = parse_reply(text, record.names)
        except ReplyError as err:
            return self._failed(str(err), start, retries, **tokens)
        return Judgement(scores=scores, reasoning=reasoning, backend=self.name, model=self.model,
                         version=self.version,
                         usage=Usage(latency_s=time.perf_counter() - start, retries=retries, **tokens))

    def _failed(self, cause: str, start: float, retries: int, **tokens: int) -> Judgement:
        if self._key:
            cause = cause.replace(self._key, "***")
        usage = Usage(latency_s=time.perf_counter() - start, retries=retries, **tokens)
        return Judgement.failed(cause[:500], self.name, self.model, self.version, usage)


def _message(err: openai.APIStatusError) -> str:
    """The server's error message, as one short line: an HTML error page (a proxy's 502) becomes its text."""
    body = err.body
    if isinstance(body, dict):
        body = body.get("error", body)
        if isinstance(body, dict):
            body = body.get("message", body)
    text = str(body or err.message)
    if re.search(r"<[a-zA-Z!/][^>]*>", text):
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
        text = re.sub(r"<[^>]*>", " ", text)
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"


def _retry_after(err: openai.APIStatusError) -> float | None:
    try:
        return max(0.0, float(err.response.headers.get("retry-after", "")))
    except (TypeError, ValueError, AttributeError):
        return None
