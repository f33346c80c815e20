"""The api judge against a real OpenAI-protocol HTTP server on 127.0.0.1 with scripted replies."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dat.judges.api import ApiJudge
from dat.judges.config import ApiJudgeConfig
from dat.judges.dimensions import DIMENSIONS
from dat.judges.prompt import ReplyError, build_prompt, parse_reply
from dat.records import DialogueRecord, Utterance

KEY = "sk-test-secret-123"
SCORES_1 = {"believability": 8, "relationship": 2, "knowledge": 5, "secret": 0, "social_rules": -1,
            "financial_and_material_benefits": 3, "goal": 7}
SCORES_2 = {"believability": 6, "relationship": -1, "knowledge": 4, "secret": -2, "social_rules": 0,
            "financial_and_material_benefits": -3, "goal": 2}


def reply_json(s1=SCORES_1, s2=SCORES_2) -> str:
    return json.dumps({"evaluations": {
        "agent_1": {d: [f"why {d}", v] for d, v in s1.items()},
        "agent_2": {d: [f"why {d}", v] for d, v in s2.items()},
    }})


def ok(text: str) -> tuple:
    return ("ok", text)


SCRIPTS = {
    "valid": [ok(reply_json())],
    "fenced": [ok("Sure! Here is my evaluation:\n```json\n" + reply_json() + "\n```\nLet me know.")],
    "prose": [ok("Both agents did reasonably well, I would say a 7 overall.")],
    "range": [ok(reply_json(s1={**SCORES_1, "goal": 12}))],
    "missing": [ok(reply_json(s2={k: v for k, v in SCORES_2.items() if k != "secret"}))],
    "flaky500": [("status", 500, {}), ok(reply_json())],
    "down500": [("status", 500, {})],
    "ratelimit": [("status", 429, {"Retry-After": "0"}), ok(reply_json())],
    "hang": [("hang",)],
    "hangonce": [("hang",), ok(reply_json())],
    "badrequest": [("status", 400, {})],
    "leak": [("status", 401, {}, f"Incorrect API key provided: {KEY}")],
    "html502": [("html", 502, "<html><head><title>502 Bad Gateway</title><style>body {color: red}</style></head>"
                              "<body><h1>502 Bad Gateway</h1>" + "<p>nginx</p>" * 200 + "</body></html>")],
    "cutstop": [ok(reply_json()[:300])],  # cut, but the server says finish_reason=stop
}


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.scripts = {k: list(v) for k, v in SCRIPTS.items()}
        self.hits: dict[str, int] = {}
        self.auth: list[str] = []
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.path == "/v1/chat/completions", self.path
        case = re.search(r"CASE-(\w+)", body["messages"][0]["content"]).group(1)
        with self.server.lock:
            self.server.hits[case] = self.server.hits.get(case, 0) + 1
            self.server.auth.append(self.headers.get("Authorization", ""))
            queue = self.server.scripts[case]
            step = queue.pop(0) if len(queue) > 1 else queue[0]
        if step[0] == "hang":
            time.sleep(1.5)
            return
        if step[0] == "cut":  # a reply stopped by the token limit: half a JSON object
            self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "length",
                                          "message": {"role": "assistant", "content": reply_json()[:40]}}],
                             "usage": {"prompt_tokens": 100, "completion_tokens": 2048, "total_tokens": 2148}})
            return
        if step[0] == "html":  # a proxy's error page, not the API's JSON error
            data = step[2].encode()
            self.send_response(step[1])
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if step[0] == "status":
            message = step[3] if len(step) > 3 else "scripted failure"
            self._send(step[1], {"error": {"message": message, "type": "error"}}, step[2])
            return
        self._send(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": step[1]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140},
        })

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:
            pass


@pytest.fixture()
def server():
    srv = Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture()
def judge(server, monkeypatch) -> ApiJudge:
    monkeypatch.setenv("DAT_TEST_JUDGE_KEY", KEY)
    cfg = ApiJudgeConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="judge-model",
                         api_key_env="DAT_TEST_JUDGE_KEY", timeout_s=0.4, max_retries=2, backoff_s=0.01,
                         concurrency=4)
    return ApiJudge(cfg)


def record(case: str) -> DialogueRecord:
    return DialogueRecord(
        task_id=case, scenario=f"CASE-{case}: a used bike sale.", names=("Ann Lee", "Bob Ray"),
        backgrounds=("Ann, 30, a teacher.", "Bob, 45, a mechanic. Secret: the bike was stolen."),
        goals=("Buy the bike for at most $100.", "Sell the bike for at least $150."),
        turns=(Utterance(0, "Would you take $80?"), Utterance(1, "No, $150 is my price.")), steered=0)


def test_valid_reply_gives_all_scores_reasoning_and_usage(judge, server):
    [j] = judge([record("valid")])
    assert j.ok and j.cause is None and (j.backend, j.model) == ("api", "judge-model")
    assert j.scores[0].available() == SCORES_1 and j.scores[1].available() == SCORES_2
    assert j.reasoning[0]["goal"] == "why goal"
    assert (j.usage.prompt_tokens, j.usage.completion_tokens, j.usage.retries) == (100, 40, 0)
    assert server.auth == [f"Bearer {KEY}"]


@pytest.mark.parametrize("case, cause, requests", [
    ("prose", "unparseable reply: no JSON object found", 1),
    ("range", "out of range: agent_1.goal=12 (allowed 0..10)", 1),
    ("missing", "missing score agent_2.secret", 1),
    ("down500", "http 500: scripted failure", 3),
    ("hang", "timeout", 3),
    ("badrequest", "http 400: scripted failure", 1),
    ("cutstop", "unparseable reply: the JSON object is cut off (it opens at char 0 and never closes; a server that "
                "stops at its token limit without saying so cuts replies: raise judge.api.max_tokens or the server's "
                "own limit)", 1),
])
def test_failures_end_in_a_failed_judgement_with_cause(judge, server, case, cause, requests):
    [j] = judge([record(case)])
    assert j.status == "failed" and j.cause == cause
    assert j.scores[0].available() == {} and j.usage.retries == requests - 1
    assert server.hits[case] == requests


@pytest.mark.parametrize("case", ["fenced", "flaky500", "ratelimit", "hangonce"])
def test_recoverable_replies_end_ok(judge, server, case):
    [j] = judge([record(case)])
    assert j.ok and j.scores[0].available() == SCORES_1
    retries = 0 if case == "fenced" else 1
    assert j.usage.retries == retries and server.hits[case] == 1 + retries


def test_an_html_error_page_becomes_a_short_line_of_its_text(judge, server):
    [j] = judge([record("html502")])
    assert j.status == "failed" and j.cause.startswith("http 502: 502 Bad Gateway 502 Bad Gateway nginx")
    assert "<" not in j.cause and "color: red" not in j.cause and len(j.cause) <= 210
    assert server.hits["html502"] == 3  # a 502 is transient: retried


def test_key_never_appears_in_a_cause(judge):
    [j] = judge([record("leak")])
    assert j.status == "failed" and KEY not in j.cause and "***" in j.cause
    assert KEY not in json.dumps(j.to_dict())


def test_concurrent_batch_keeps_order_and_counts_everything(judge):
    cases = ["valid", "prose", "ratelimit", "down500", "fenced", "hangonce"]
    judgements = judge([record(c) for c in cases])
    assert [j.status for j in judgements] == ["ok", "failed", "ok", "failed", "ok", "ok"]
    m = judge.metrics()
    assert m["judge/calls"] == 6 and m["judge/failures"] == 2 and m["judge/retries"] == 1 + 2 + 1
    assert m["judge/prompt_tokens"] == 100 * 5 and m["judge/completion_tokens"] == 40 * 5
    assert m["judge/latency_s"] > 0 and m["judge/failure_rate"] == pytest.approx(2 / 6)


def test_unset_key_variable_is_a_configuration_error(monkeypatch):
    monkeypatch.delenv("DAT_TEST_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="DAT_TEST_NO_SUCH_KEY is not set"):
        ApiJudge(ApiJudgeConfig(api_key_env="DAT_TEST_NO_SUCH_KEY"))


def test_unreachable_server_fails_with_connection_error():
    cfg = ApiJudgeConfig(base_url="http://127.0.0.1:9/v1", api_key_env="", max_retries=1, backoff_s=0.0,
                         timeout_s=1.0)
    [j] = ApiJudge(cfg)([record("valid")])
    assert j.status == "failed" and j.cause.startswith("connection error") and j.usage.retries == 1


def test_prompt_holds_everything_the_judge_must_see():
    text = build_prompt(record("valid"))
    for part in ("a used bike sale", "Ann, 30, a teacher.", "Secret: the bike was stolen.",
                 "Buy the bike for at most $100.", 'Turn #1: Bob Ray said: "No, $150 is my price."',
                 '"agent_1" for Ann Lee', '"agent_2" for Bob Ray', *DIMENSIONS):
        assert part in text


def test_parser_tolerates_shapes_but_not_bad_values():
    names = ("Ann Lee", "Bob Ray")
    loose = json.dumps({
        "Ann Lee": {d: {"reasoning": "r", "score": v} for d, v in SCORES_1.items()},
        "agent_2": dict(SCORES_2)}).replace("}}", "},}") + " trailing words"
    scores, reasoning = parse_reply("Verdict: " + loose, names)
    assert scores[0].available() == SCORES_1 and scores[1].available() == SCORES_2
    assert reasoning[0]["goal"] == "r" and reasoning[1] == {}
    with pytest.raises(ReplyError, match="invalid score agent_1.goal"):
        parse_reply(reply_json(s1={**SCORES_1, "goal": "high"}), names)
    with pytest.raises(ReplyError, match="missing scores of agent_2"):
        parse_reply(json.dumps({"agent_1": SCORES_1}), names)
    with pytest.raises(ReplyError, match="invalid JSON"):
        parse_reply('{"agent_1": {"goal": [}', names)


def test_the_cache_key_includes_the_server():
    """Another server's judgements are not reused: the judge's version (part of the cache key) names it."""
    here = ApiJudge(ApiJudgeConfig(base_url="http://127.0.0.1:8000/v1", api_key_env=""))
    there = ApiJudge(ApiJudgeConfig(base_url="http://127.0.0.1:9000/v1", api_key_env=""))
    same = ApiJudge(ApiJudgeConfig(base_url="http://127.0.0.1:8000/v1/", api_key_env=""))
    assert here.version != there.version and here.version == same.version


@pytest.mark.parametrize("bad", [7.5, "7", True])
def test_a_score_that_is_not_an_integer_is_a_failed_reply(bad):
    text = reply_json(s1={**SCORES_1, "goal": bad})
    with pytest.raises(ReplyError, match="expected an integer"):
        parse_reply(text, ("A", "B"))


def test_a_reply_cut_at_max_tokens_says_so(server, judge):
    server.scripts["cut"] = [("cut",)]
    [j] = judge([record("cut")])
    assert not j.ok and "finish_reason=length" in j.cause and "max_tokens" in j.cause


def test_a_hanging_endpoint_costs_at_most_the_budget(server, monkeypatch):
    monkeypatch.setenv("DAT_TEST_JUDGE_KEY", KEY)
    cfg = ApiJudgeConfig(base_url=f"http://127.0.0.1:{server.server_address[1]}/v1", model="judge-model",
                         api_key_env="DAT_TEST_JUDGE_KEY", timeout_s=0.4, max_retries=50, backoff_s=0.05,
                         budget_s=1.2)
    started = time.perf_counter()
    [j] = ApiJudge(cfg)([record("hang")])
    assert not j.ok and "judge.api.budget_s=1.2" in j.cause
    assert time.perf_counter() - started < 2.5  # 50 retries would take over 20 s
