"""Run the entry points on the tiny model and print, as JSON, every deprecation our code triggered.

Run in a fresh process (``tests/test_deprecations.py``) because libraries report some deprecations
only once per process. The run covers the library surface we touch: model loading and conversion,
cached and uncached states and generation with prefixes, the local judge's shared-context cache
path, the Gymnasium env and its checkers, SB3's TD3+BC, Hydra, W&B (offline), export and reload,
evaluation and ``dat chat``.
"""

from __future__ import annotations

import os
import sys

os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ["TRANSFORMERS_VERBOSITY"] = "warning"  # the entry points quieten it; deprecations are logged

import json  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dat_pipeline import CONF  # noqa: E402

from tests.deprecations import OWN_ROOTS, own_deprecations  # noqa: E402


def main(work: Path, extra_roots: list[Path]) -> None:
    with own_deprecations([*OWN_ROOTS, *extra_roots]) as found:
        from dat_pipeline import cli as dat_cli
        from dat_pipeline import evaluate, train

        from hydra import compose, initialize_config_dir

        from dat.config import to_config

        common = ["debug=tiny", f"model.cache_dir={work / 'cache'}"]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[*common, "judge=local", "logger=wandb", "logger.mode=offline",
                                              f"output_dir={work / 'run'}", "loop.rounds=1"])
        train.train(to_config(cfg))
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("evaluate", overrides=[*common, f"policy={work / 'run' / 'export'}", "logger=none",
                                                 "episodes_per_scenario=1", "max_tasks=2"])
        evaluate.evaluate(to_config(cfg, evaluate.EvaluateConfig), output_dir=work / "eval")
        os.environ["XDG_CACHE_HOME"] = str(work / "xdg")
        dat_cli.main(["chat", "--policy", str(work / "run" / "export"), "--turns", "1", "--max-new-tokens", "4"])
        for script in extra_roots:  # the test's own proof that a deprecation is caught
            exec(compile(script.read_text(), str(script), "exec"), {"__name__": "__probe__"})
    print("DEPRECATIONS " + json.dumps([str(d) for d in found]))


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
