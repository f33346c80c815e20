"""Hydra sweeps: one output folder and one W&B run per job, with the basic and the submitit launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["debug=tiny", "loop.rounds=1", "loop.episodes_per_round=2", "loop.eval_tasks=2", "env.max_turns=1"]


def sweep(tmp_path: Path, *args: str) -> list[Path]:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "WANDB_SILENT": "true"}
    command = [sys.executable, str(ROOT / "train.py"), "-m", *SMALL, f"model.cache_dir={tmp_path / 'cache'}",
               f"hydra.sweep.dir={tmp_path / 'sweep'}", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.mark.slow
def test_basic_sweep_runs_four_jobs_with_their_own_outputs_and_runs(tmp_path):
    jobs = sweep(tmp_path, "algo.alpha=0,2.5", "seed=0,1")
    assert len(jobs) == 4
    names = {j.name for j in jobs}
    assert any("algo.alpha=0" in n and "seed=1" in n for n in names)
    run_ids = set()
    for job in jobs:
        assert (job / "export" / "model.safetensors").is_file() and (job / "checkpoints" / "latest").is_file()
        runs = list((job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        run_ids.add(runs[0].name.rsplit("-", 1)[-1])
        wandb = str(Path(sys.executable).parent / "wandb")
        inspect = subprocess.run([wandb, "leet", "inspect", "--json", str(runs[0])], capture_output=True, text=True,
                                 check=True).stdout
        records = [json.loads(line) for line in inspect.splitlines() if line.startswith("{")]
        run = next(r for r in records if r["type"] == "run")
        assert run["run"]["run_group"] == "sweep"  # the jobs of a sweep share a group: the sweep folder's name
    assert len(run_ids) == 4  # no job reused another's W&B run


@pytest.mark.slow
def test_submitit_local_launcher_runs_the_sweep(tmp_path):
    jobs = sweep(tmp_path, "seed=0,1", "hydra/launcher=submitit_local", "logger=none")
    assert len(jobs) == 2
    for job in jobs:
        assert (job / "export" / "config.json").is_file()
    assert (tmp_path / "sweep" / ".submitit").is_dir()


def test_run_folder_names_are_one_path_component():
    from dat_pipeline import runtime as dat_runtime

    assert dat_runtime.run_folder_name("") == "default"
    name = dat_runtime.run_folder_name("judge.api.base_url=http://127.0.0.1:8000/v1,seed=1")
    assert "/" not in name and name.endswith("seed=1")
