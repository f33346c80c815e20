"""The GPU check (``benchmarks/gpu_check.sh``) at toy size on the CPU: the path a GPU machine runs, but CUDA.

It runs from the checkout in place (no install), with whatever wheels it finds put first on the path; here
it finds none and says so, and the project's own environment has every dependency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_a_round_and_an_evaluation_in_place(tmp_path) -> None:
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHON": sys.executable, "DAT_WHEELS": str(tmp_path / "no-wheels"), "WANDB_MODE": "offline"}
    run = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--size", "tiny", "--device", "cpu",
                          "--episodes", "8", "--batch", "8", "--work", str(tmp_path / "work"), "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no wheels in" in run.stderr  # it says where the dependencies must come from
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["settings"]["episodes"] == 8
    assert result["rollout_dialogues_per_hour"] > 0 and result["generated_tokens_per_s"] > 0
    assert (tmp_path / "work" / "run" / "export").is_dir()  # the round exported its planner


@pytest.mark.slow
def test_gpu_check_refuses_cuda_where_there_is_none() -> None:
    if __import__("torch").cuda.is_available():
        pytest.skip("a CUDA device is here")
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cuda"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode != 0 and "no CUDA device here" in run.stderr
