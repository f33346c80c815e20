#!/usr/bin/env bash
# The GPU check: one short DAT training round and an evaluation on CUDA with a random-weight model the
# shape of Llama-3-8B (benchmarks/gpu_check.py), printing rollout throughput and peak memory.
#
# On a machine whose Python has torch (CUDA build), transformers, peft and accelerate but no internet:
# bring the other dependencies as wheels (`pip download --no-deps -d wheels/ stable-baselines3 gymnasium
# hydra-core omegaconf antlr4-python3-runtime vaderSentiment gguf` on a connected machine; wandb and
# matplotlib are imported lazily or not at all with logger=none) and set DAT_WHEELS to that folder.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${DAT_WHEELS:-}" ]]; then
  python -m pip install --quiet --no-index --no-deps --find-links "$DAT_WHEELS" "$DAT_WHEELS"/*.whl
fi
python -m pip install --quiet --no-deps --no-build-isolation -e . 2>/dev/null || true
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
python - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: run python benchmarks/gpu_check.py --size tiny --device cpu instead"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
timeout 600 python benchmarks/gpu_check.py "$@"
