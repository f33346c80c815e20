"""Re-scoring saved episodes with another judge config writes a new file and keeps the original."""

from __future__ import annotations

from dat_pipeline import CONF
from dat_pipeline.rescore import load_config, main

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dat.judges import JudgeConfig, make_judge
from dat.records import DialogueRecord, Utterance

ROOT = Path(__file__).resolve().parents[1]


def episode(i: int) -> dict:
    record = DialogueRecord(
        task_id=f"bike-{i}", scenario="A used bike sale.", names=("Ann", "Bob"), backgrounds=("", ""),
        goals=("Buy the bike for at most $100.", "Sell high."),
        turns=(Utterance(0, f"Would you take ${80 + 20 * i}?"), Utterance(1, "OK, deal.")), steered=0,
        checks=({"agent": 0, "kind": "price", "at_most": 100},))
    return {"record": record.to_dict(), "judgement": {"status": "ok", "scores": [{"goal": 3}, {}]},
            "reward": 0.3, "round": 2, "actions": [[0.1, -0.2]], "meta": {"seed": i}}


@pytest.fixture()
def episodes(tmp_path) -> Path:
    path = tmp_path / "episodes.jsonl"
    path.write_text("".join(json.dumps(episode(i)) + "\n" for i in range(3)))
    return path


def test_rescore_writes_new_judgements_and_keeps_everything_else(episodes, tmp_path, capsys):
    before = episodes.read_bytes()
    out = tmp_path / "rescored.jsonl"
    code = main(["--episodes", str(episodes), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "judge=rule"])
    assert code == 0 and episodes.read_bytes() == before
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    originals = [json.loads(json.dumps(episode(i))) for i in range(3)]
    assert [line["reward"] for line in lines] == [1.0, 1.0, 0.0]  # $80, $100 <= 100; $120 is not
    for line, original in zip(lines, originals, strict=True):
        assert line["judgement"]["backend"] == "rule" and line["judgement"]["status"] == "ok"
        assert {k: v for k, v in line.items() if k not in ("judgement", "reward")} == {
            k: v for k, v in original.items() if k not in ("judgement", "reward")}
    summary = json.loads(capsys.readouterr().out)
    assert summary["episodes"] == 3 and summary["failures"] == 0 and summary["judge/calls"] == 3
    # Run again: every judgement now comes from the cache.
    assert main(["--episodes", str(episodes), "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                 "judge=rule"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["judge/calls"] == 0 and summary["judge/cache_hits"] == 3


def test_overrides_change_the_judge_and_the_reward(episodes, tmp_path, capsys):
    out = tmp_path / "rescored.jsonl"
    code = main(["--episodes", str(episodes), "--out", str(out), "judge=rule", "judge.cache=false",
                 "judge.rule.checks=[{kind: keyword, pattern: deal, speaker: partner}]",
                 "judge.weights.normalise=false"])
    assert code == 0
    assert [json.loads(line)["reward"] for line in out.read_text().splitlines()] == [10.0, 10.0, 5.0]


def test_errors_name_the_problem(episodes, tmp_path, capsys):
    assert main(["--episodes", str(episodes), "--out", str(episodes), "judge=rule", "judge.cache=false"]) == 2
    assert "is the input file" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(episode(0)) + "\n" + '{"no_record": 1}\n')
    assert main(["--episodes", str(bad), "--out", str(tmp_path / "o.jsonl"), "judge=rule",
                 "judge.cache=false"]) == 2
    assert f"{bad}:2: not an episode line" in capsys.readouterr().err
    presets = ", ".join(sorted(f.stem for f in (CONF / "judge").glob("*.yaml")))
    with pytest.raises(ValueError, match=f"choose one of {presets}$"):  # every judge preset, listed
        load_config(["judge=gpt5"])
    with pytest.raises(ValueError, match="Key 'modl' not in 'ApiJudgeConfig'"):
        load_config(["judge=api", "judge.api.modl=x"])


def test_module_entry_point_runs(episodes, tmp_path):
    out = tmp_path / "rescored.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "dat_pipeline.rescore", "--episodes", str(episodes), "--out",
                           str(out), "judge=rule", "judge.cache=false"], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 3


def test_the_dat_command_runs_it(episodes, tmp_path):
    from dat_pipeline import cli

    out = tmp_path / "rescored.jsonl"
    assert cli.main(["rescore", "--episodes", str(episodes), "--out", str(out), "judge=rule", "judge.cache=false"]) == 0
    assert len(out.read_text().splitlines()) == 3


def test_run_mode_explains_what_it_cannot_do(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["--run", str(run), "judge=rule"]) == 2  # the folder is named as missing, whatever the judge
    assert f"--run {run}: no such folder" in capsys.readouterr().err
    (run / "episodes").mkdir(parents=True)
    assert main(["--run", str(run)]) == 2  # no saved config and no judge given
    assert ".hydra/config.yaml not found: pass the run's judge settings" in capsys.readouterr().err
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("env: {reward_per_turn: true}\njudge: {backend: rule}\n")
    assert main(["--run", str(run)]) == 2
    assert "pays a reward per turn" in capsys.readouterr().err
    (run / ".hydra" / "config.yaml").write_text("env: {reward_per_turn: false}\njudge: {backend: rule}\n")
    assert main(["--run", str(run), "judge.weights.overall=true"]) == 2
    assert "judge.weights differ from the run's" in capsys.readouterr().err
    assert main(["--run", str(run), "--cache-dir", str(tmp_path / "cache")]) == 0  # no failed episode: nothing
    assert json.loads(capsys.readouterr().out)["rejudged"] == 0
    with pytest.raises(SystemExit):
        main(["--run", str(run), "--episodes", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert "pass either --episodes IN --out OUT, or --run RUN" in capsys.readouterr().err


def test_a_run_log_survives_a_half_written_line_and_keeps_the_first_judgement(tmp_path, capsys):
    from dat.judges.rejudge import LOG, FailedJudgements, logged

    folder = tmp_path / "run" / "episodes" / "round-0000"
    folder.mkdir(parents=True)
    rows = [{**episode(i), "judgement": {"status": "failed", "cause": "HTTP 500"}, "reward": None,
             "judgement_failed": True, "seed": 10 + i, "steered": 0, "task_id": f"bike-{i}"} for i in range(2)]
    (folder / "batch-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / LOG).write_text(json.dumps({"seed": 10, "reward": 0.5, "judgement": {}}) + "\n"
                              + json.dumps({"seed": 10, "reward": 0.0, "judgement": {}}) + "\n" + '{"seed": 11, "rew')
    counts = FailedJudgements(tmp_path / "run" / "episodes").rejudge(make_judge(JudgeConfig(backend="rule",
                                                                                            cache=False)))
    assert counts["rejudged"] == 1 and counts["recovered"] == 1  # seed 10 was logged; 11's line was cut
    assert {seed: entry.reward for seed, entry in logged(folder).items()} == {10: 0.5, 11: 1.0}
