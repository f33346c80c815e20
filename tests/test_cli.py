"""The ``dat`` command: ``dat chat`` (a steered dialogue from an export, with the model or a human on stdin as the
partner, or both conditions side by side), ``dat train`` / ``dat evaluate`` (the Hydra entry points with the
configs installed with the package) and a ``dat --help`` that answers at once."""

from __future__ import annotations

from dat_pipeline import CONF
from dat_pipeline import cli as dat_cli

import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from dat.action.projection import PrefixConfig, build_projection
from dat.lm.frozen import FrozenLM
from dat.lm.loading import ModelConfig
from dat.rl.export import DATPolicy
from dat.rl.td3bc import TD3BC, AlgoConfig, NetArch


@pytest.fixture(autouse=True)
def user_cache(monkeypatch, tmp_path_factory):
    """The command loads the export's base model through the user cache: keep it in a temp folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chat")
    lm = FrozenLM.load(ModelConfig(name="tiny-random", cache_dir=str(folder / "cache")))
    obs = spaces.Box(-np.inf, np.inf, (lm.hidden_size,), np.float32)
    algo = TD3BC.from_config(AlgoConfig(net_arch=NetArch([8], [8])), observation_space=obs,
                             action_space=spaces.Box(-1, 1, (4,), np.float32), seed=0)
    projection = build_projection(lm.model.get_input_embeddings().weight, PrefixConfig(action_dim=4, norm=4.0))
    DATPolicy.from_trained(algo, projection, "tiny-random").save_pretrained(folder / "export")
    return folder / "export"


def test_chat_with_the_model_as_partner(export, capsys):
    code = dat_cli.main(["chat", "--policy", str(export), "--turns", "2", "--greedy", "--max-new-tokens", "6"])
    out = capsys.readouterr().out
    assert code == 0 and "(steered) talks with" in out
    assert len([line for line in out.splitlines() if ": " in line and not line.startswith("[")]) >= 2


def test_chat_with_a_human_partner(export, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there, how much is it?\n\n"))
    code = dat_cli.main(["chat", "--policy", str(export), "--interactive", "--greedy", "--max-new-tokens", "6"])
    assert code == 0
    assert "type your lines" in capsys.readouterr().out


def test_unknown_task_is_explained(export, capsys):
    assert dat_cli.main(["chat", "--policy", str(export), "--task", "no-such-task"]) == 2
    assert "No task 'no-such-task'" in capsys.readouterr().out


def test_export_steers_what_it_says(export):
    policy = DATPolicy.from_pretrained(export)
    assert policy(torch.zeros(2, policy.state_mean.shape[0])).shape == (2, 2, policy.state_mean.shape[0])


def test_chat_compares_the_steered_reply_with_the_unsteered_one(export, capsys):
    code = dat_cli.main(["chat", "--policy", str(export), "--turns", "1", "--greedy", "--max-new-tokens", "6",
                         "--compare"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    steered = [line for line in lines if line.startswith("[steered]")]
    unsteered = [line for line in lines if line.startswith("[unsteered]")]
    assert len(steered) == len(unsteered) == 2  # the steered line and the partner's reply, in each dialogue


ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, cwd: Path, path: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_help_answers_at_once_and_lists_every_subcommand(tmp_path):
    code = ("import sys, time; start = time.perf_counter(); from dat_pipeline import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('seconds', time.perf_counter() - start, 'torch', 'torch' in sys.modules)")
    runs = [_python(code, ROOT) for _ in range(3)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    for command in ("chat", "train", "evaluate"):
        assert command in runs[0].stdout
    assert all(run.stdout.split()[-1] == "False" for run in runs)  # the heavy imports wait for the arguments
    assert min(float(run.stdout.split()[-3]) for run in runs) < 1.0


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project built as a wheel (from a copy of the checkout's package files) and installed into a folder of
    its own, so the tests below see what ``pip install`` gives: no checkout beside the command."""
    pytest.importorskip("setuptools")
    base = tmp_path_factory.mktemp("wheel")
    source, wheels, target = base / "source", base / "dist", base / "site"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("dat", "envs", "dat_pipeline"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", *(p.name for p in ROOT.glob("*.py"))):
        shutil.copy2(ROOT / name, source / name)

    def pip(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "pip", "-q", *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr

    pip("wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels))
    pip("install", "--no-deps", "--no-index", "--target", str(target), str(next(wheels.glob("*.whl"))))
    return target


def test_the_wheel_holds_every_module_and_every_config(installed):
    wheel = next((installed.parent / "dist").glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for folder in ("dat", "envs", "dat_pipeline")
               for p in (ROOT / folder).rglob("*.py")}
    assert modules - names == set() and "dat_pipeline/train.py" in modules
    configs = {p.relative_to(ROOT).as_posix() for p in CONF.rglob("*.yaml")}
    assert len(configs) > 20 and configs - names == set()
    assert not {n for n in names if "/" not in n}  # no loose top-level modules
    scenarios = {p.relative_to(ROOT).as_posix() for p in (ROOT / "envs" / "scenarios" / "data").rglob("*.jsonl")}
    assert scenarios and scenarios - names == set()
    prebuilt = {p.relative_to(ROOT).as_posix() for p in (ROOT / "dat" / "action" / "prebuilt").rglob("projection.*")}
    assert prebuilt and prebuilt - names == set()


def test_train_and_evaluate_compose_their_configs_from_the_installed_package(installed, tmp_path):
    code = ("from dat_pipeline import cli as dat_cli\nimport dat_pipeline.train\n"
            "print('FROM', dat_cli.__file__, dat_pipeline.train.__file__)\n"
            "dat_cli.main(['train', '--cfg', 'job', 'loop.rounds=1', 'logger=none', 'prefix=pca'])\n"
            "dat_cli.main(['evaluate', '--cfg', 'job', 'policy=somewhere/export', 'episodes_per_scenario=3'])\n")
    done = _python(code, tmp_path, installed)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    package = installed / "dat_pipeline"
    assert out.split()[1:3] == [str(package / "cli.py"), str(package / "train.py")]
    train, evaluate = out.split("policy: somewhere/export")[0], out.split("policy: somewhere/export")[1]
    assert "rounds: 1" in train and "backend: none" in train and "kind: pca" in train
    assert "episodes_per_scenario: 3" in evaluate
    assert list(tmp_path.iterdir()) == []  # --cfg job composes and prints; nothing is run or written


def test_train_from_the_installed_package_refuses_a_bad_value_before_any_work(installed, tmp_path):
    started = time.perf_counter()
    done = _python("import sys; from dat_pipeline import cli\n"
                   "sys.exit(cli.main(['train', 'loop.rounds=-1', 'logger=none']))", tmp_path, installed)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == "error: loop.rounds=-1 must be at least 1."
    assert list(tmp_path.iterdir()) == [] and time.perf_counter() - started < 120  # no model, no run folder


@pytest.mark.slow
def test_hydra_help_lists_the_config_groups(installed, tmp_path):
    done = _python("from dat_pipeline import cli; cli.main(['train', '--help'])", tmp_path, installed)
    assert done.returncode == 0, done.stderr
    for group in ("model:", "prefix:", "judge:", "smollm2", "behaviours_goal_hint_deep"):
        assert group in done.stdout


@pytest.mark.slow
def test_train_from_a_checkout_uses_the_checkout_configs(tmp_path):
    done = _python("from dat_pipeline import cli; cli.main(['train', '--cfg', 'job', 'debug=tiny'])", tmp_path, ROOT)
    assert done.returncode == 0, done.stderr
    assert "tiny-random" in done.stdout


@pytest.mark.slow
def test_readme_first_run_train_then_compare_on_the_tiny_model(tmp_path):
    """The README's seconds-long first run: ``dat train debug=tiny`` then ``dat chat --compare`` on its export."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    code = ("import os, sys\nfrom dat_pipeline import cli as dat_cli\n"
            f"os.environ.update({env!r})\n"
            "assert dat_cli.main(['train', 'debug=tiny', 'logger=none']) == 0\n"
            "sys.exit(dat_cli.main(['chat', '--policy', 'outputs/train/debug=tiny/export', '--compare', '--turns', '1',"
            " '--max-new-tokens', '6']))\n")
    done = _python(code, tmp_path, ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "outputs" / "train" / "debug=tiny" / "export" / "model.safetensors").is_file()
    lines = done.stdout.splitlines()
    assert sum(line.startswith("[steered]") for line in lines) == sum(line.startswith("[unsteered]") for line in lines)
    assert any(line.startswith("[unsteered]") for line in lines)
