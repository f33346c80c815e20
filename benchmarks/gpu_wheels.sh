#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU machine that has no internet, fetched here into .whl/.
#
# Such a machine's Python is expected to hold torch (CUDA build), numpy, safetensors, tokenizers,
# huggingface_hub, peft and accelerate. What it lacks, or holds in a version the project cannot run with,
# travels: transformers at the lock's version (an older one fails at the first cached read: the project
# reads `out.cache`, which older releases call `past_key_values`), regex (transformers checks its version at
# import), and the training stack (stable-baselines3, gymnasium, Hydra with OmegaConf and ANTLR's runtime,
# VADER). Versions come from requirements/lock.txt, so the GPU runs the code the tests ran; wheels for
# CPython ${PYTHON_VERSION:-3.12} on manylinux x86_64 (pure-Python ones fit any). About 16 MiB.
#
#   bash benchmarks/gpu_wheels.sh              # writes .whl/ (git ignores it)
#   bash benchmarks/gpu_check.sh               # there: installs .whl/ beside its Python, runs the check
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(transformers regex stable-baselines3 gymnasium farama-notifications hydra-core omegaconf vadersentiment)
SDISTS=(antlr4-python3-runtime)  # published as a source archive only: built into a wheel here
PY=${PY:-python3}
OUT=${WHEELS:-.whl}

pinned() {  # name==version as the lock has it
  local line
  line=$(grep -i -E "^$1==" requirements/lock.txt | head -1 | cut -d' ' -f1) || true
  [[ -n "$line" ]] || { echo "gpu_wheels.sh: $1 is not in requirements/lock.txt" >&2; exit 2; }
  echo "$line"
}

rm -rf "$OUT" && mkdir -p "$OUT"
specs=()
for name in "${PACKAGES[@]}"; do specs+=("$(pinned "$name")"); done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
  --python-version "${PYTHON_VERSION:-3.12}" --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$OUT" "${specs[@]}"
for name in "${SDISTS[@]}"; do
  "$PY" -m pip wheel --quiet --no-deps -w "$OUT" "$(pinned "$name")"
done
ls "$OUT"
du -sh "$OUT"
