"""Our code triggers no deprecation in the libraries it uses (transformers, torch, SB3, Gymnasium, Hydra, W&B)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def probe(tmp_path: Path, *extra: Path) -> list[str]:
    """Deprecations reported by a fresh process running the entry points (and the ``extra`` scripts)."""
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "deprecation_probe.py"), str(tmp_path),
                           *map(str, extra)], cwd=ROOT, env=os.environ.copy(), capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("DEPRECATIONS "))
    return json.loads(line.removeprefix("DEPRECATIONS "))


@pytest.mark.slow
def test_entry_points_trigger_no_deprecation_and_the_probe_would_see_one(tmp_path):
    # A file of "our" code that uses transformers' old cache argument: the probe must report it,
    # or an empty report below would prove nothing.
    old_api = tmp_path / "old_api.py"
    old_api.write_text(
        "from dat.lm.frozen import FrozenLM\nfrom dat.lm.loading import ModelConfig\n"
        f"lm = FrozenLM.load(ModelConfig(name='tiny-random', cache_dir={str(tmp_path / 'cache')!r}))\n"
        "import torch\nids = torch.tensor([[1, 2, 3]])\n"
        "out = lm.model(input_ids=ids, use_cache=True)\n"
        "lm.model(input_ids=ids[:, -1:], past_key_values=out.cache, use_cache=True)\n"
    )
    found = probe(tmp_path, old_api)
    ours = [d for d in found if not d.startswith(old_api.name)]
    assert ours == [], "\n".join(ours)
    assert any(d.startswith(old_api.name) and "past_key_values" in d for d in found), found
