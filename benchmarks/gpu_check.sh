#!/usr/bin/env bash
# The GPU check: one short DAT training round and an evaluation on CUDA with a random-weight model the
# shape of Llama-3-8B (benchmarks/gpu_check.py), printing rollout throughput and peak memory.
#
# For a machine without internet whose Python has torch (CUDA build), peft and accelerate (its own
# transformers too, which may be older than the project runs with):
# fetch the rest as wheels on a connected machine first (`bash benchmarks/gpu_wheels.sh` writes .whl/,
# which then travels with the checkout; DAT_WHEELS names another folder). They are installed into a
# folder of their own put first on PYTHONPATH, so the machine's own packages stay as they are while the
# lock's versions (transformers included) take precedence. The checkout itself runs in place.
#
#   bash benchmarks/gpu_check.sh                                     # on a CUDA machine (600 s at most)
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --size tiny --device cpu   # the same path, anywhere
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${DAT_WHEELS:-.whl}
SITE=${DAT_SITE:-/tmp/dat-gpu-site}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout, in place
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SITE:$PYTHONPATH"
else
  echo "gpu_check.sh: no wheels in $WHEELS/, so $PYTHON must hold every dependency (where it lacks them, run" \
       "bash benchmarks/gpu_wheels.sh on a connected machine first)" >&2
fi
export OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
timeout 600 "$PYTHON" benchmarks/gpu_check.py "$@"
