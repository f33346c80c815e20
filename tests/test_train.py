"""train(cfg) end to end on the tiny model: outputs, resume without loss or duplication, W&B, config errors."""

from __future__ import annotations

from dat_pipeline import CONF
from dat_pipeline import train as train_module

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from dat.config import TrainConfig, to_config, validate
from dat.rl.export import DATPolicy
from envs.scenarios import load_scenarios

ROOT = Path(__file__).resolve().parents[1]


def config(tmp_path: Path, *overrides: str) -> TrainConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["debug=tiny", f"model.cache_dir={tmp_path / 'cache'}", *overrides])
    return to_config(cfg)


DELIBERATE = {"prefix", "behaviours"}
"""Where dat_pipeline/conf/train.yaml departs from TrainConfig() on purpose: the prefix preset it selects
(prefix=behaviours_goal_hint_deep, a trained behaviour basis) fills the prefix and behaviours groups."""


def differences(a, b, path: str = "") -> list[str]:
    """Dotted paths where two nested dicts differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}{k}.")]
    return [] if a == b else [path.rstrip(".")]


def test_every_default_is_written_once_the_yaml_composes_to_the_schema(tmp_path):
    from dataclasses import asdict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        full = to_config(compose("train"))
    changed = differences(asdict(full), asdict(TrainConfig()))
    assert changed and {c.split(".")[0] for c in changed} == DELIBERATE, changed
    assert full.model.name == "smollm2-135m-instruct" and full.algo.alpha == 2.5
    assert full.judge.backend == "embedding" and full.env.scenarios.eval == "bundled:eval"
    assert (full.prefix.kind, full.prefix.depth, full.behaviours.name) == ("behaviours", "layers", "goal_hint_deep")
    cfg = config(tmp_path)
    assert cfg.model.name == "tiny-random" and cfg.loop.rounds == 2  # debug overrides the defaults


def test_dat_paper_experiment_is_the_released_td3_script(tmp_path):
    """DAT's released settings (likenneth/dialogue_action_token, dat/td3.py and its README command)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        paper = to_config(compose("train", overrides=["experiment=dat_paper"]))
    algo = paper.algo
    assert (algo.alpha, algo.critic_lr, algo.actor_lr, algo.batch_size) == (0.0, 1e-5, 1e-6, 1024)
    assert (algo.gamma, algo.tau, algo.policy_noise, algo.noise_clip, algo.policy_delay) == (0.99, 0.005, 0.2, 0.5, 2)
    assert algo.net_arch.actor == [4096, 4096] and algo.net_arch.critic == [4096, 256] and algo.activation == "silu"
    assert (algo.gradient_steps_per_round, algo.exploration_noise, algo.buffer_size) == (750, 0.1, 80000)
    assert (paper.prefix.kind, paper.prefix.position, paper.prefix.action_dim) == ("pca", "start", 64)
    assert paper.env.max_turns == 3


@pytest.mark.parametrize("override, error", [
    ("algo.alpah=1", ConfigCompositionException), ("seed=abc", ConfigCompositionException),
    ("model=gpt9", ConfigCompositionException),
])
def test_mistyped_config_fails_at_start(tmp_path, override, error):
    with pytest.raises((error, ConfigKeyError, ValidationError)) as info:
        config(tmp_path, override)
    assert override.split("=")[0].split(".")[-1] in str(info.value)


def test_train_writes_outputs_logs_to_wandb_and_resumes_without_duplicates(tmp_path):
    out = tmp_path / "run"
    metrics = train_module.train(config(tmp_path, "logger=wandb", "logger.mode=offline", f"output_dir={out}",
                                        "loop.constant_per_task=1", "loop.constant_tasks=3",
                                        "loop.held_out_judges=[rule]"))
    assert {"eval/policy/mean", "eval/unsteered/mean", "eval/zero/mean", "eval/policy/diff"} <= set(metrics)
    # a held-out judge scores the same episodes again: here the training judge itself, so the two agree
    for condition in ("policy", "unsteered", "best_constant"):
        assert metrics[f"eval/{condition}/reward@rule/mean"] == pytest.approx(metrics[f"eval/{condition}/mean"])
    assert {"eval/best_constant/mean", "eval/prompted/mean", "eval/policy_vs_strongest/diff",
            "eval/policy/restates_goal/mean", "eval/prompted/in_character/mean", "eval/zero/distinct"} <= set(metrics)
    # the best constant action was chosen on the training tasks alone, and is cached for the next run
    (chosen,) = (tmp_path / "cache").rglob("best_constant/*.json")
    cfg = config(tmp_path)
    train_ids = {t.id for t in load_scenarios(cfg.env.scenarios.train, ids=cfg.env.scenarios.ids)[:3]}
    eval_ids = {t.id for t in load_scenarios(cfg.env.scenarios.eval)}
    assert set(json.loads(chosen.read_text())["settings"]["tasks"]) == train_ids and not train_ids & eval_ids
    assert train_module.OBJECTIVE in metrics  # what main() hands a Hydra sweeper
    assert (out / "learning_curves.png").is_file() and (out / "eval" / "round-0001" / "evaluation.png").is_file()
    state = json.loads((out / "checkpoints" / "round-0002" / "state.json").read_text())
    assert state["round"] == 2 and len(state["history"]) == 2
    assert sorted(p.name for p in (out / "episodes").iterdir()) == ["round-0000", "round-0001"]
    card = (out / "export" / "README.md").read_text()
    assert "arxiv.org/abs/2406.11978" in card and "| policy |" in card and "judge: rule" in card
    policy = DATPolicy.from_pretrained(out / "export")
    assert policy.base_model == "tiny-random" and policy.act(torch.zeros(1, 64)).shape == (1, 8)
    check_wandb_run(out)

    train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", "loop.rounds=3",
                              "loop.constant_per_task=1", "loop.constant_tasks=3"))  # read back from its cache
    state = json.loads((out / "checkpoints" / "round-0003" / "state.json").read_text())
    assert [h["round"] for h in state["history"]] == [0, 1, 2]  # resumed at round 2, nothing repeated
    calls = [h["judge/calls"] for h in state["history"]]
    assert calls[0] < calls[1] < calls[2]  # the judge's totals continue across the resume
    transitions = [h["rollout/buffer_transitions"] for h in state["history"]]
    assert transitions[2] - transitions[1] == pytest.approx(transitions[1] - transitions[0], abs=4)
    with pytest.raises(FileExistsError, match="resume=false"):
        train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", "loop.rounds=4", "resume=false"))


def test_a_resumed_run_ends_as_the_uninterrupted_one_to_the_bit(tmp_path):
    """Resumed after round 1 or 2 of 3: the judge's totals and every saved evaluation array as the run that never
    stopped has them (the resumed process reads the baselines' episodes back instead of playing them again)."""
    def run(out: Path, rounds: int) -> list[dict]:
        train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", f"loop.rounds={rounds}"))
        return json.loads((out / "checkpoints" / f"round-{rounds:04d}" / "state.json").read_text())["history"]

    def arrays(out: Path) -> dict[str, np.ndarray]:
        found = {}
        for path in sorted((out / "eval").rglob("batch-*.npz")):
            with np.load(path) as data:
                found.update({f"{path.relative_to(out)}:{k}": data[k] for k in data.files})
        return found

    straight = run(tmp_path / "straight", 3)
    expected = arrays(tmp_path / "straight")
    assert any("unsteered" in key for key in expected) and any("policy" in key for key in expected)
    for stop in (1, 2):
        out = tmp_path / f"resumed-{stop}"
        run(out, stop)
        resumed = run(out, 3)
        for key in ("judge/calls", "judge/cache_hits", "eval/policy/mean", "eval/unsteered/mean"):
            assert [h[key] for h in resumed] == [h[key] for h in straight], (stop, key)
        found = arrays(out)
        assert found.keys() == expected.keys()
        differing = {k: float(np.abs(found[k].astype(float) - expected[k]).max()) for k in expected
                     if not np.array_equal(found[k], expected[k], equal_nan=True)}
        assert not differing, (stop, differing)


def check_wandb_run(out: Path) -> None:
    """Read the offline run back with W&B's own reader and check every metric family is there."""
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    wandb = Path(sys.executable).parent / "wandb"
    inspect = subprocess.run([str(wandb), "leet", "inspect", "--summary", "--json", str(runs[0])],
                             capture_output=True, text=True, check=True)
    summary = json.loads(inspect.stdout)
    keys = set(summary["summary"])
    for key in ("train/critic_loss", "train/actor_loss", "train/lambda", "train/q_mean", "rollout/reward_mean",
                "judge/calls", "eval/policy/mean", "eval/unsteered/mean", "perf/dialogues_per_hour",
                "eval/transcripts"):
        assert key in keys, key
    assert summary["state"] == "finished"
    assert summary["config"]["algo"]["alpha"] == 2.5
    assert {"eval/chart", "learning_curves"} <= keys  # the PNGs, as images
    records = [json.loads(line) for line in subprocess.run(
        [str(wandb), "leet", "inspect", "--json", str(runs[0])], capture_output=True, text=True,
        check=True).stdout.splitlines() if line.startswith("{")]
    assert any(r["type"] == "metric" and r["metric"].get("step_metric") == "round" for r in records)  # x-axis
    versions = {(r["artifact"]["type"], alias) for r in records if r["type"] == "artifact"
                for alias in r["artifact"]["aliases"]}
    assert {("model", "round-1"), ("model", "round-2"), ("checkpoint", "round-2")} <= versions  # versioned


def run_script(tmp_path: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "WANDB_MODE": "offline"}
    args = [sys.executable, str(ROOT / "train.py"), "debug=tiny", "logger=none",
            f"model.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={out}", *extra]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run_script(tmp_path, straight).wait(timeout=600) == 0
    process = run_script(tmp_path, killed)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "round-0001" / "COMPLETE").exists():  # round 1 of 2 is done
        assert process.poll() is None and time.time() < deadline, process.stderr.read() if process.stderr else ""
        time.sleep(0.2)
    time.sleep(1.0)  # somewhere inside round 2: its episodes and updates are lost and must be redone
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert run_script(tmp_path, killed).wait(timeout=600) == 0
    log = (straight / "train.log").read_text()  # the run's record: a line per round, evaluations included
    assert "round 1/2: " in log and "round 2/2: " in log and "held-out reward policy" in log and "finished" in log
    assert "resuming from" in (killed / "train.log").read_text()  # the re-run appends to the killed run's log
    a = DATPolicy.from_pretrained(straight / "export")
    b = DATPolicy.from_pretrained(killed / "export")
    states = torch.randn(6, 64)
    assert torch.allclose(a.act(states), b.act(states), atol=1e-6)
    for name in ("round-0000", "round-0001"):
        lines_a = (straight / "episodes" / name).glob("*.jsonl")
        lines_b = (killed / "episodes" / name).glob("*.jsonl")
        assert sum(len(p.read_text().splitlines()) for p in lines_a) == sum(
            len(p.read_text().splitlines()) for p in lines_b)
    history_a = json.loads((straight / "checkpoints" / "round-0002" / "state.json").read_text())["history"]
    history_b = json.loads((killed / "checkpoints" / "round-0002" / "state.json").read_text())["history"]
    for key in ("rollout/buffer_transitions", "train/critic_loss", "eval/policy/mean"):
        assert np.allclose([h[key] for h in history_a], [h[key] for h in history_b], equal_nan=True), key


def test_learned_projection_is_self_cloned_once_then_reused(tmp_path):
    clone = ["prefix=experimental/learned_target", "prefix.kind=learned", "prefix.tied=false", "selfclone.steps=3",
             "selfclone.dialogues=4", "selfclone.replies_per_dialogue=1", "selfclone.sampling.max_new_tokens=4",
             "selfclone.hidden_sizes=[16]", "selfclone.checkpoint_every=2", "loop.rounds=1", "logger=none"]
    train_module.train(config(tmp_path, *clone, f"output_dir={tmp_path / 'a'}"))
    cached = tmp_path / "cache" / "derived" / "tiny-random" / "projections" / "learned_target"
    record = json.loads((cached / "projection.json").read_text())["record"]
    assert record["complete"] and record["steps"] == 3
    stamp = (cached / "projection.safetensors").stat().st_mtime_ns
    train_module.train(config(tmp_path, *clone, f"output_dir={tmp_path / 'b'}"))
    assert (cached / "projection.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    used = json.loads((tmp_path / "b" / "projection" / "projection.json").read_text())
    assert used["prefix"]["kind"] == "learned" and used["record"]["cached_at"] == str(cached)
    with pytest.raises(ValueError, match="prefix.action_dim"):
        train_module.train(config(tmp_path, *clone, "prefix.action_dim=4", f"output_dir={tmp_path / 'c'}"))
    # A changed self-cloning setting under the same name is refused, never silently served the stale projection.
    with pytest.raises(ValueError, match=r"other settings \(selfclone.lr\)"):
        train_module.train(config(tmp_path, *clone, "selfclone.lr=0.5", f"output_dir={tmp_path / 'd'}"))


BAD_VALUES = [
    ("prefix.kind=foo", "prefix.kind='foo' is not one of: pca, learned, anchors, behaviours"),
    ("prefix.position=middle", "prefix.position='middle' is not one of: start, before_reply"),
    ("loop.rounds=-1", "loop.rounds=-1 must be at least 1"),
    ("prefix.path=/no/such/projection", "prefix.path='/no/such/projection' holds no up-projection"),
    ("logger.mode=offlien", "logger.mode='offlien' is not one of: offline, online, disabled"),
    ("model.device=gpu0", "model.device='gpu0' is not a torch device"),
    ("model.kv_store_mib=-1", "model.kv_store_mib=-1 must be >= 0"),
    ("env.sampling.top_p=1.5", "env.sampling.top_p=1.5 must be in (0, 1]"),
]


@pytest.mark.parametrize("override, message", BAD_VALUES)
def test_bad_values_are_refused_with_a_message_that_names_them(tmp_path, override, message):
    with pytest.raises((ValueError, FileNotFoundError)) as refused:
        validate(config(tmp_path, override))  # what the start check runs before Hydra writes anything
    assert message in str(refused.value)


def bad_scenarios(tmp_path: Path, name: str, content: bytes) -> Path:
    """A copy of the bundled scenario files whose tasks.jsonl holds ``content``."""
    folder = tmp_path / name
    folder.mkdir()
    for source in (ROOT / "envs" / "scenarios" / "data").glob("*.jsonl"):
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "tasks.jsonl").write_bytes(content)
    return folder


@pytest.mark.parametrize("entry, overrides, message", [
    ("train", ["env.scenarios.train=/nope-folder"], "/nope-folder: neither a known set nor a folder"),
    ("train", ["env.scenarios.train={non_utf8}"], "tasks.jsonl, line 1: not UTF-8 text"),
    ("train", ["env.scenarios.eval={empty}"], "tasks.jsonl: the file holds no rows"),
    ("train", ["model.name=/nope-model"], "model.name='/nope-model' is not a folder here"),
    ("evaluate", ["policy=/nope-export"], "policy=/nope-export: no such folder"),
    ("evaluate", ["conditions=[policy,foo]"], "conditions ['foo'] are unknown"),
    ("train", ["loop.held_out_judges=[rule,nosuch]"], "loop.held_out_judges: judge=nosuch: no "),
    ("evaluate", ["held_out_judges=[nosuch]"], "held_out_judges: judge=nosuch: no "),
])
def test_bad_paths_are_refused_before_hydra_makes_the_run_folder(tmp_path, capsys, entry, overrides, message):
    """What the start check (the Hydra callback that runs before the run folder exists) refuses: every file
    a config names is read there (the subprocess test above shows nothing is written before it)."""
    from dat_pipeline import evaluate as evaluate_module  # noqa: F401  (registers the evaluate schema)
    from dat_pipeline.runtime import StartChecks

    paths = {"non_utf8": bad_scenarios(tmp_path, "non_utf8", b"\xff\xfe{}\n"),
             "empty": bad_scenarios(tmp_path, "empty", b"")}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(entry, overrides=["debug=tiny", "logger=none", f"model.cache_dir={tmp_path / 'cache'}",
                                        *(o.format(**paths) for o in overrides)])
    with pytest.raises(SystemExit) as stopped:
        StartChecks().on_run_start(cfg)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


def test_an_error_starts_its_own_line_under_a_progress_bar(capsys):
    from dat_pipeline.runtime import one_line_errors

    from tqdm import tqdm

    @one_line_errors
    def task():
        bar = tqdm(total=3, desc="round 1/3: collect")  # left open, as an error deep in a round leaves it
        bar.update(1)
        raise ValueError("the judge failed 8 judgements in a row")

    with pytest.raises(SystemExit):
        task()
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("error: the judge failed 8 judgements in a row"), lines[-2:]
    assert "round 1/3: collect" in "".join(lines[:-1])


def test_a_bad_value_fails_in_one_line_before_the_model_loads(tmp_path):
    """The command-line path of every refusal above: the start check's one line, and nothing written."""
    override, message = BAD_VALUES[3]
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "debug=tiny", "logger=none", f"model.cache_dir={tmp_path / 'cache'}",
         override], capture_output=True, text=True, cwd=tmp_path, timeout=120)  # Hydra's folder would be here
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1], lines[-3:]
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.iterdir())  # no run folder, no .hydra/, no model converted: nothing written


def test_a_checkpoint_resumes_only_under_the_same_settings(tmp_path):
    out = tmp_path / "run"
    train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", "loop.rounds=1"))
    orphan = out / "checkpoints" / ".staging-0002-999999"
    orphan.mkdir()  # a kill while a checkpoint was being written
    with pytest.raises(ValueError, match=r"other settings \(algo.net_arch, seed\).*force_resume=true"):
        train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", "loop.rounds=2", "seed=5",
                                  "algo.net_arch.actor=[16]"))
    assert orphan.is_dir() and not (out / "checkpoints" / "round-0002").exists()  # refused before any work
    train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", "loop.rounds=2"))  # same settings
    assert not orphan.exists() and (out / "checkpoints" / "round-0002").is_dir()
    train_module.train(config(tmp_path, "logger=none", f"output_dir={out}", "loop.rounds=3", "seed=5",
                              "force_resume=true"))
    state = json.loads((out / "checkpoints" / "round-0003" / "state.json").read_text())
    assert state["settings"]["seed"] == 5 and [h["round"] for h in state["history"]] == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("override", [
    "judge.api.api_key_env=sk-proj-PLANTEDkey0123456789abcdef",  # the key where its variable's name belongs
    "name=sk-proj-PLANTEDkey0123456789abcdef",  # a key-like value anywhere
    "judge.api.api_key_env=gsk_PLANTEDsecret4242abcdEFGHijkl",  # a key of another shape: no such variable is set
    "judge.api.base_url=http://user:PLANTEDtoken@127.0.0.1:9/v1",  # a token inside a URL
])
def test_a_key_in_the_config_is_refused_before_anything_is_written(tmp_path, override):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "debug=tiny", "judge=api", "logger=none",
         f"hydra.run.dir={tmp_path / 'run'}", f"model.cache_dir={tmp_path / 'cache'}", override],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: "), result.stderr[-1500:]
    assert "PLANTED" not in result.stdout + result.stderr  # never echoed
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not written and not any("PLANTED" in str(p) for p in tmp_path.rglob("*")), written
