"""Instruction stability: probes branched off self-chats on the tiny model, the per-round summary, the entry point."""

from __future__ import annotations

from dat_pipeline import CONF

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from dat.config import to_config
from dat.dialogue.rules import Dialogue, EnvConfig, Lockstep
from dat.eval import stability_report
from dat.eval.stability import REMINDER, ProbeAnswer, make_conditions, measure
from dat.records import Utterance
from envs.scenarios import load_scenarios
from tests.dialogue_tasks import GREEDY, NEVER

ENV = EnvConfig(sampling=GREEDY, leave_phrase=NEVER)


@pytest.fixture(scope="module")
def tasks():
    return load_scenarios("probes", ids=["code_word", "french", "letter_b"])[::2]  # one task of each prompt


class Planner:
    def __init__(self, dim: int):
        self.dim, self.seen = dim, []

    def __call__(self, states):
        self.seen.append(tuple(states.shape))
        return np.full((len(states), self.dim), 0.5, np.float32)


def test_probes_branch_off_every_round_without_changing_the_dialogue(lm, proj, tasks):
    planner = Planner(proj.cfg.action_dim)
    conditions = make_conditions(["policy", "unsteered", "zero", "random", "repeat"], planner)
    run = measure(lm, proj, tasks, conditions, ENV, rounds=3, seeds=[7], batch_size=8)
    assert len(run.answers) == len(tasks) * 5 * 3
    assert {(a.condition, a.round) for a in run.answers} == {(c.name, r) for c in conditions for r in (1, 2, 3)}
    assert all(a.answer is not None and 0.0 <= a.score <= 1.0 for a in run.answers)
    assert planner.seen and all(shape[1] == lm.hidden_size for shape in planner.seen)
    # One main dialogue per task and main condition (repeat branches off the unsteered one), 2R - 1 lines.
    mains = [(d["task_id"], d["main"]) for d in run.dialogues]
    assert sorted(mains) == sorted((t.id, m) for t in tasks for m in ("policy", "unsteered", "zero", "random"))
    assert all(len(d["turns"]) == 5 and d["turns"][0]["text"] == next(t for t in tasks if t.id == d["task_id"]
                                                                       ).topic.text for d in run.dialogues)
    # The probe message: the question, or the system prompt and then the question.
    for a in run.answers:
        task = next(t for t in tasks if t.id == a.task_id)
        expected = REMINDER.format(system=task.prompt.system, question=task.prompt.question)
        assert a.question == (expected if a.condition == "repeat" else task.prompt.question)
    # The unsteered main dialogues are those a plain lockstep run plays (greedy): probing changed nothing.
    cfg = replace(ENV, max_turns=3, partner_opens=True, steered=0)
    plain = [Dialogue.open(t, 0, True, cfg) for t in tasks]
    lockstep = Lockstep(lm, None, cfg)
    lockstep.start(plain, 0)
    for rnd in range(2):
        lockstep.step(plain, None, (rnd, rnd))
    played = {d["task_id"]: [t["text"] for t in d["turns"]] for d in run.dialogues if d["main"] == "unsteered"}
    assert [played[t.id] for t in tasks] == [[u.text for u in d.turns] for d in plain]
    # The round-r answer is what the steered agent says to the probe after r - 1 rounds (checked for round 2).
    d = plain[0]
    probe = Dialogue.open(tasks[0], 0, True, cfg)
    probe.turns = [*d.turns[:2], Utterance(1, tasks[0].prompt.question)]
    fresh = Lockstep(lm, None, replace(cfg, max_turns=2, kv_cache=False))
    fresh.step([probe], None, (0, 0))
    answer = next(a for a in run.answers if a.task_id == tasks[0].id and a.condition == "unsteered" and a.round == 2)
    assert answer.answer == probe.turns[-1].text


def test_conditions_are_paired_and_seeded(lm, proj, tasks):
    conditions = make_conditions(["unsteered", "random"], None)
    assert [c.name for c in conditions] == ["unsteered", "random"]
    sampled = replace(ENV, sampling=replace(GREEDY, do_sample=True, temperature=1.0))
    first = measure(lm, proj, tasks[:2], conditions, sampled, rounds=2, seeds=[1, 2], batch_size=4)
    again = measure(lm, proj, tasks[:2], conditions, sampled, rounds=2, seeds=[1, 2], batch_size=4)
    assert [a.answer for a in first.answers] == [a.answer for a in again.answers]
    keys = {c: sorted((a.task_id, a.seed, a.round) for a in first.answers if a.condition == c) for c in
            ("unsteered", "random")}
    assert keys["unsteered"] == keys["random"] and len(keys["random"]) == 2 * 2 * 2
    with pytest.raises(ValueError, match="unknown"):
        make_conditions(["unsteered", "prompted"], None)
    with pytest.raises(ValueError, match="need an up-projection"):
        measure(lm, None, tasks[:1], conditions, ENV, rounds=1)


def _answer(task, seed, condition, rnd, score, prompt=None):
    return ProbeAnswer(task, prompt or task.split("/")[0], "pattern", seed, condition, rnd, "Q?", "A.", score)


def test_the_summary_gives_means_intervals_and_paired_differences_per_round(tmp_path):
    answers = []
    for k, prompt in enumerate(["p1", "p2", "p3", "p4"]):
        for rnd in (1, 2):
            base = 1.0 if rnd == 1 else 0.5 * (k % 2)  # drifts: 1.0 at round 1, mean 0.25 at round 2
            answers.append(_answer(f"{prompt}/1", 0, "unsteered", rnd, base))
            answers.append(_answer(f"{prompt}/1", 0, "repeat", rnd, min(1.0, base + 0.5)))
    answers.append(_answer("p1/1", 0, "zero", 1, None))
    summary = stability_report.summarize(answers)
    assert summary["rounds"] == [1, 2] and summary["level"] == 0.68 and summary["n_prompts"] == 4
    unsteered, repeat = summary["results"]["unsteered"], summary["results"]["repeat"]
    assert unsteered[0]["mean"] == 1.0 and unsteered[1]["mean"] == pytest.approx(0.25)
    assert unsteered[1]["low"] <= 0.25 <= unsteered[1]["high"] and unsteered[1]["high"] <= 0.5
    assert repeat[1]["mean"] == pytest.approx(0.75) and repeat[1]["diff"]["mean_diff"] == pytest.approx(0.5)
    assert repeat[0]["diff"]["mean_diff"] == 0.0 and unsteered[0]["diff"] is None
    assert summary["overall"]["unsteered"]["mean"] == pytest.approx(0.625)
    assert summary["overall"]["repeat"]["diff"]["mean_diff"] == pytest.approx(0.25)  # rounds averaged, then paired
    assert summary["overall"]["unsteered"]["diff"] is None
    zero = summary["results"]["zero"]
    assert zero[0]["n"] == 0 and zero[0]["n_missing"] == 4 and math.isnan(zero[0]["mean"])
    paths = stability_report.write(summary, tmp_path, {"model": "test"})
    saved = json.loads(paths["json"].read_text())
    assert saved["results"]["zero"][0]["mean"] is None and saved["metadata"]["model"] == "test"
    table = paths["markdown"].read_text()
    assert "| unsteered | 1.00 [1.00, 1.00] | 0.25 [" in table and "| repeat | +0.00" in table
    assert "zero 8" in table  # probes not scored are counted
    repeat_diff = next(line for line in table.splitlines() if line.startswith("| repeat | +0.00"))
    assert repeat_diff.rstrip(" |").split("| ")[-1].startswith("+0.25 [")  # the all-rounds paired difference
    assert paths["png"].stat().st_size > 1000


def test_the_entry_point_writes_the_report_and_an_offline_wandb_run(tmp_path, monkeypatch):
    from dat_pipeline import evaluate  # noqa: F401  (the tiny export helper below loads the same way)
    from dat_pipeline import stability as entry

    from tests.test_evaluate import export_policy

    monkeypatch.setenv("WANDB_MODE", "offline")
    export = export_policy(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("stability", overrides=[
            "debug=tiny", f"policy={export}", "tasks=probes:eval", "max_tasks=2", "tasks_per_prompt=1", "rounds=2",
            "seeds=2", "logger.mode=offline", f"model.cache_dir={tmp_path / 'cache'}"])
    cfg = to_config(cfg, entry.StabilityConfig)
    metrics = entry.stability(cfg, output_dir=tmp_path / "out")
    out = tmp_path / "out"
    report = json.loads((out / "stability.json").read_text())
    assert report["conditions"] == ["policy", "unsteered", "zero", "random", "repeat"]
    assert report["rounds"] == [1, 2] and report["n_dialogues"] == 4 and report["metadata"]["rounds"] == 2
    assert len((out / "answers.jsonl").read_text().splitlines()) == 2 * 2 * 5 * 2
    assert (out / "stability.png").is_file() and "| policy |" in (out / "stability.md").read_text()
    assert "stability/policy/mean" in metrics and "stability/repeat/mean" in metrics
    assert "stability/policy/diff" in metrics and "stability/unsteered/diff" not in metrics
    assert list((out / "wandb").glob("offline-run-*/run-*.wandb"))


def test_a_bad_setting_is_refused_before_the_model_loads(tmp_path):
    from dat_pipeline import stability as entry

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("stability", overrides=["debug=tiny", "conditions=[unsteered,steered]", "logger=none"])
    with pytest.raises(ValueError, match="unknown"):
        entry.stability(to_config(cfg, entry.StabilityConfig), output_dir=tmp_path / "bad")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("stability", overrides=["debug=tiny", "tasks=bundled:eval", "logger=none",
                                              f"model.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ValueError, match="no probe tasks"):
        entry.stability(to_config(cfg, entry.StabilityConfig), output_dir=tmp_path / "bad2")
    assert not (tmp_path / "bad").exists()


def test_the_stability_experiment_composes_on_the_default_model():
    from dat_pipeline import train  # noqa: F401  (registers the schemas)

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("train", overrides=["experiment=stability"]))
    assert cfg.model.name == "smollm2-135m-instruct" and cfg.judge.backend == "probe"
    assert (cfg.env.probe, cfg.env.partner_opens, cfg.env.steered, cfg.env.max_turns) == (True, True, 0, 4)
    assert (cfg.env.scenarios.train, cfg.env.scenarios.eval) == ("probes:train", "probes:eval")
    assert cfg.prefix.kind == "behaviours" and cfg.behaviours.name == "probe_hint_deep"  # never the default's basis
    assert "{goal}" in cfg.behaviours.behaviours[0].hint
    cfg.env.validate()


def test_train_experiment_stability_runs_a_round_on_the_tiny_model(tmp_path):
    from dat_pipeline import train as train_module

    from dat.dialogue.episodes import load_episodes

    out = tmp_path / "run"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = to_config(compose("train", overrides=[
            "experiment=stability", "debug=tiny", "judge=probe", "loop.rounds=1", "loop.episodes_per_round=4",
            "loop.eval_tasks=4", f"model.cache_dir={tmp_path / 'cache'}", "logger=wandb", "logger.mode=offline",
            f"output_dir={out}"]))
    assert cfg.judge.backend == "probe" and cfg.env.probe
    metrics = train_module.train(cfg)
    assert {"eval/policy/mean", "eval/unsteered/mean", "eval/zero/mean"} <= set(metrics)
    assert (out / "export" / "model.safetensors").is_file()
    assert (out / "eval" / "round-0000" / "evaluation.json").is_file()
    assert list((out / "wandb").glob("offline-run-*"))
    episodes = load_episodes(out / "episodes" / "round-0000")
    train_ids = {t.id for t in load_scenarios("probes:train")}
    assert len(episodes) == 4 and all(e.task_id in train_ids for e in episodes)
    for e in episodes:  # the partner opens with the topic and asks the probe last; the steered agent answers it
        task = next(t for t in load_scenarios("probes") if t.id == e.task_id)
        turns = e.record.turns
        assert len(turns) == 2 * cfg.env.max_turns and e.steered == 0
        assert turns[0].text == task.topic.text and turns[-2].text == task.prompt.question and turns[-1].agent == 0
        assert e.judgement["backend"] == "probe" and e.reward is not None and 0.0 <= e.reward <= 1.0


@pytest.mark.slow
def test_dat_stability_hands_its_arguments_to_hydra():
    import subprocess
    import sys

    root = CONF.parents[1]
    listed = subprocess.run([sys.executable, "-m", "dat_pipeline.cli", "--help"], capture_output=True, text=True,
                            cwd=root, check=True).stdout
    assert "stability" in listed
    job = subprocess.run([sys.executable, "-m", "dat_pipeline.cli", "stability", "--cfg", "job", "rounds=5",
                          "policy=somewhere/export"], capture_output=True, text=True, check=True, cwd=root).stdout
    assert "rounds: 5" in job and "policy: somewhere/export" in job and "tasks: probes:eval" in job
    # A run folder named after its overrides holds = and , : the README quotes it for Hydra, as here.
    named = subprocess.run([sys.executable, str(root / "stability.py"), "--cfg", "job",
                            'policy="outputs/train/experiment=stability,seed=0/export"'], capture_output=True,
                           text=True, check=True, cwd=root).stdout
    assert "policy: outputs/train/experiment=stability,seed=0/export" in named
