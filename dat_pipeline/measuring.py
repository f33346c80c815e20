"""What a measurement script (``benchmarks/``: speed and memory; ``experiments/``: research studies) shares: the
folder its JSON goes to and the machine it ran on.

Importing this module, like any of ``dat_pipeline``, applies the process settings before torch loads
(``dat_pipeline/runtime.py``), so a script imports it first. ``RESULTS`` is a checkout's
``benchmarks/results/``: the docs' tables are generated from the JSON there (``experiments/update_docs.py``)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def machine() -> dict:
    """What the numbers were measured on (they are meaningless without it)."""
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def write_result(name: str, result: dict) -> Path:
    """``result`` with the machine it ran on, as ``RESULTS/<name>.json``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2))
    print(f"wrote {path}")
    return path
