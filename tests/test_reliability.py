"""A judge outage during training: stopped at once with its cause, failed episodes kept, judged again later.

The judge is the real API backend talking to a real HTTP server on 127.0.0.1 that speaks the OpenAI
chat-completions protocol, switched between down, flaky and healthy between runs of the same folder.
"""

from __future__ import annotations

from dat_pipeline import train as train_module

import json
import os
import subprocess
import sys
import threading
from http.server import ThreadingHTTPServer

import pytest

from dat.dialogue.episodes import load_episodes
from dat.dialogue.scoring import JudgeOutage
from tests.test_judges_api import Handler as ScriptedHandler
from tests.test_judges_api import reply_json
from tests.test_train import ROOT, config


class Judge(ThreadingHTTPServer):
    """mode "down": HTTP 401 to everything; "first": HTTP 500 to the first request, then answers; "up"; "script":
    request k (from 1) gets ``script[k - 1]`` (an HTTP status; 200 answers), past its end 200."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode, self.requests = "up", 0
        self.script: list[int] = []
        self.bodies: list[str] = []
        """The conversation of every request, as sent."""
        self.authorizations: set[str] = set()
        """Every Authorization header received."""
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(ScriptedHandler):
    """The OpenAI-protocol plumbing of the API-judge tests' server, answering by the server's mode."""

    server: Judge

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests += 1
            self.server.bodies.append(json.dumps(body["messages"]))
            self.server.authorizations.add(self.headers.get("Authorization", ""))
            first, number = self.server.requests == 1, self.server.requests
        scripted = self.server.script[number - 1] if number <= len(self.server.script) else 200
        if self.server.mode == "down":
            self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
        elif (self.server.mode == "first" and first) or (self.server.mode == "script" and scripted != 200):
            self._send(scripted if self.server.mode == "script" else 500,
                       {"error": {"message": "overloaded", "type": "server_error"}})
        else:
            self._send(200, {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": reply_json()}}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})


@pytest.fixture()
def judge_server():
    server = Judge()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_outage_stops_at_once_and_failed_episodes_enter_training_once_judged(tmp_path, judge_server):
    out = tmp_path / "run"

    def run(rounds: int):
        return train_module.train(config(
            tmp_path, "judge=api", f"judge.api.base_url={judge_server.url}", "judge.api.api_key_env=",
            "judge.api.max_retries=0", "judge.api.concurrency=1", "judge.api.timeout_s=5", "logger=none",
            f"output_dir={out}", f"loop.rounds={rounds}", "loop.episodes_per_round=6", "loop.batch_size=2",
            "judge.outage_after=3"))

    judge_server.mode = "down"
    with pytest.raises(JudgeOutage, match=r"failed 4 judgements in a row \(.*401"):
        run(1)
    assert judge_server.requests == 4  # stopped after the second batch, not at the end of the round
    assert not (out / "checkpoints").exists()
    stopped = load_episodes(out / "episodes" / "round-0000")  # the interrupted round's episodes are written
    assert len(stopped) == 4 and all("401" in e.judgement["cause"] for e in stopped)

    judge_server.mode, judge_server.requests = "first", 0
    run(1)  # one judgement fails (1 of 6: under loop.max_failed_share), the round completes
    episodes = load_episodes(out / "episodes" / "round-0000")
    failed = [e for e in episodes if e.judgement_failed]
    assert len(episodes) == 6 and len(failed) == 1  # kept on disk, with its cause
    assert "500" in failed[0].judgement["cause"]
    state = json.loads((out / "checkpoints" / "round-0001" / "state.json").read_text())
    assert state["history"][0]["rollout/failed_judgements"] == 1 and state["recovered"] == []

    judge_server.mode = "up"
    run(2)  # the next round judges the failed episode again; now it succeeds and enters the buffer
    state = json.loads((out / "checkpoints" / "round-0002" / "state.json").read_text())
    assert state["recovered"] == [f"round-0000/{failed[0].seed}"]
    assert state["history"][1]["rollout/rejudged"] == 1
    transitions = [h["rollout/buffer_transitions"] for h in state["history"]]
    assert transitions[1] - transitions[0] == sum(len(e) for e in load_episodes(out / "episodes" / "round-0001")
                                                  if not e.judgement_failed) + len(failed[0])
    log = out / "episodes" / "round-0000" / "rejudged.jsonl"
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["seed"] for row in logged] == [failed[0].seed] and logged[0]["reward"] is not None


@pytest.mark.slow
def test_rescore_of_a_run_judges_its_failed_episodes_in_place_and_a_resume_adds_them_once(
        tmp_path, judge_server, capsys):
    from dat_pipeline.rescore import main as rescore

    from omegaconf import OmegaConf

    out = tmp_path / "run"

    def cfg(rounds: int):
        return config(tmp_path, "judge=api", f"judge.api.base_url={judge_server.url}", "judge.api.api_key_env=",
                      "judge.api.max_retries=0", "judge.api.concurrency=1", "judge.api.timeout_s=5", "logger=none",
                      f"output_dir={out}", f"loop.rounds={rounds}", "loop.episodes_per_round=6",
                      "loop.batch_size=2")

    def state(rounds: int) -> dict:
        return json.loads((out / "checkpoints" / f"round-{rounds:04d}" / "state.json").read_text())

    judge_server.mode = "first"
    train_module.train(cfg(1))  # one judgement fails (HTTP 500), the round completes without it
    failed = [e for e in load_episodes(out / "episodes" / "round-0000") if e.judgement_failed]
    assert len(failed) == 1 and "500" in failed[0].judgement["cause"]
    (out / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.structured(cfg(1)), out / ".hydra" / "config.yaml")  # as Hydra saves it
    log = out / "episodes" / "round-0000" / "rejudged.jsonl"

    judge_server.mode, judge_server.requests = "down", 0
    assert rescore(["--run", str(out)]) == 1  # the server the run saved is still down: said, nothing logged
    assert "1 failed episodes" in capsys.readouterr().err and judge_server.requests == 1 and not log.exists()
    assert rescore(["--run", str(out), "judge=rule"]) == 2  # another reward would mix into the buffer
    assert "judge.backend differ" in capsys.readouterr().err

    judge_server.mode, judge_server.requests = "up", 0
    # Its own cache, so that judging the episode again below would show as a request, not a cache hit.
    assert rescore(["--run", str(out), "--cache-dir", str(tmp_path / "rescore_cache")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rejudged"] == summary["recovered"] == 1 and summary["still_failed"] == 0
    assert judge_server.requests == 1
    asked = judge_server.bodies[-1]  # the failed episode's judgement, as the judge is asked for it
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["seed"] for row in logged] == [failed[0].seed] and logged[0]["reward"] is not None
    assert rescore(["--run", str(out)]) == 0 and judge_server.requests == 1  # nothing left to judge
    assert json.loads(capsys.readouterr().out)["rejudged"] == 0
    with log.open("a") as f:  # a second writer logged the same episode too, and a killed one left half a line
        f.write(json.dumps({**logged[0], "reward": 0.0}) + "\n" + '{"seed": 1')

    judge_server.bodies.clear()
    train_module.train(cfg(2))  # resume: adds the logged episode to the buffer without judging it again
    history = state(2)["history"]
    assert state(2)["recovered"] == [f"round-0000/{failed[0].seed}"] and history[1]["rollout/rejudged"] == 1
    assert judge_server.bodies and asked not in judge_server.bodies
    new = [e for e in load_episodes(out / "episodes" / "round-0001") if not e.judgement_failed]
    transitions = [h["rollout/buffer_transitions"] for h in history]
    assert transitions[1] - transitions[0] == sum(len(e) for e in new) + len(failed[0])

    train_module.train(cfg(3))  # a later resume adds it no more
    history = state(3)["history"]
    assert state(3)["recovered"] == [f"round-0000/{failed[0].seed}"] and history[2]["rollout/rejudged"] == 0
    new = [e for e in load_episodes(out / "episodes" / "round-0002") if not e.judgement_failed]
    assert history[2]["rollout/buffer_transitions"] - history[1]["rollout/buffer_transitions"] == sum(
        len(e) for e in new)


def test_one_failed_judgement_in_a_batch_of_one_does_not_stop_the_run(tmp_path, judge_server):
    out = tmp_path / "run"
    judge_server.mode, judge_server.script = "script", [200, 200, 500, 500]  # the third dialogue's two tries fail
    train_module.train(config(
        tmp_path, "judge=api", f"judge.api.base_url={judge_server.url}", "judge.api.api_key_env=",
        "judge.api.max_retries=1", "judge.api.concurrency=1", "logger=none", f"output_dir={out}",
        "loop.rounds=1", "loop.episodes_per_round=6", "loop.batch_size=1"))
    episodes = load_episodes(out / "episodes" / "round-0000")
    assert len(episodes) == 6 and [e.judgement_failed for e in episodes].count(True) == 1
    assert "500" in next(e for e in episodes if e.judgement_failed).judgement["cause"]
    state = json.loads((out / "checkpoints" / "round-0001" / "state.json").read_text())
    assert state["history"][0]["rollout/failed_judgements"] == 1


def test_a_round_with_too_many_failures_stops_with_the_cause_and_keeps_its_episodes(tmp_path, judge_server):
    out = tmp_path / "run"
    judge_server.mode = "first"  # 1 of 6 judgements fails: over a threshold of 0.1
    with pytest.raises(JudgeOutage, match=r"1 of 6 judgements of round 0 failed \(more than "
                                          r"loop.max_failed_share=0.1\); first cause: .*500"):
        train_module.train(config(
            tmp_path, "judge=api", f"judge.api.base_url={judge_server.url}", "judge.api.api_key_env=",
            "judge.api.max_retries=0", "judge.api.concurrency=1", "logger=none", f"output_dir={out}",
            "loop.rounds=1", "loop.episodes_per_round=6", "loop.batch_size=2", "loop.max_failed_share=0.1"))
    assert not (out / "checkpoints").exists()
    episodes = load_episodes(out / "episodes" / "round-0000")
    assert len(episodes) == 6 and ["500" in e.judgement["cause"] for e in episodes if e.judgement_failed] == [True]


@pytest.mark.slow
def test_the_judge_key_reaches_the_server_and_no_file_a_run_writes(tmp_path, judge_server):
    key = "sk-proj-PLANTEDjudgeKey0123456789abcdef"
    env = {**os.environ, "DAT_TEST_JUDGE_KEY": key, "PYTHONPATH": str(ROOT),
           **{f"WANDB_{name}": str(tmp_path / "wandb_home" / name.lower()) for name in
              ("DIR", "CONFIG_DIR", "CACHE_DIR", "DATA_DIR", "ARTIFACT_DIR")}}
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "debug=tiny", "judge=api", f"judge.api.base_url={judge_server.url}",
         "judge.api.api_key_env=DAT_TEST_JUDGE_KEY", "judge.api.max_retries=0", "logger=wandb",
         "logger.mode=offline", f"hydra.run.dir={tmp_path / 'run'}", f"model.cache_dir={tmp_path / 'cache'}",
         "loop.rounds=1"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert judge_server.authorizations == {f"Bearer {key}"}  # the key was in use all along
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.parent.name == ".hydra" for p in written) and any("wandb" in p.parts for p in written)
    assert any("judge_cache" in p.parts for p in written)
    assert key not in result.stdout + result.stderr
    leaked = [p for p in tmp_path.rglob("*") if "PLANTED" in str(p) or (p.is_file() and b"PLANTED" in p.read_bytes())]
    assert not leaked, leaked
