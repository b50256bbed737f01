# The two commands: `make demo` and `make test`. Each sets up everything it needs on a fresh
# machine (Debian packages, .venv, the package and its extras) and then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= .demo
# training audio (split by the build's fractions), validation-only audio, training steps: sized so
# that `make demo` takes under 10 minutes on 2 CPU cores and the validation CER clearly falls
DEMO_MINUTES ?= 20
DEMO_HELDOUT_MINUTES ?= 6
DEMO_STEPS ?= 500

.PHONY: demo test setup system-deps bench clean lock fresh-check

system-deps:
	@bash infra/install-system-deps.sh

# Install only from the lock: uv.lock pins every package, transitive ones too, with hashes.
# uv itself comes from PyPI into .tools/, pinned by hash. Re-installs when the lock changes.
UV_TOOLS ?= .tools
UV := $(UV_TOOLS)/bin/uv
# The extras `make demo` and `make test` need: dev (pytest, moto, pandas) and train (torch pair).
EXTRAS := --extra dev --extra train

$(UV): infra/uv-requirements.txt
	@test -x $(UV_TOOLS)/bin/python || $(PYTHON) -m venv $(UV_TOOLS)
	$(UV_TOOLS)/bin/python -m pip install -q --no-deps --require-hashes -r infra/uv-requirements.txt
	@touch $@

$(VENV)/.installed: uv.lock pyproject.toml $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen $(EXTRAS) --python $(PYTHON)
	$(PY) infra/check_torch_pair.py
	@touch $@

# Regenerate the lock from pyproject.toml's ranges (all packages at their newest allowed
# versions); to move one package only: make lock LOCK_ARGS='--upgrade-package NAME'.
lock: $(UV)
	$(UV) lock $(LOCK_ARGS)

# The check before every stop: a new clone, a new .venv, no caches; make test and make demo there.
fresh-check:
	bash infra/fresh-check.sh

setup: system-deps $(VENV)/.installed

test: setup
	$(PY) -m pytest

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/stt-corpus gen-audio $(DEMO_DIR)/raw --minutes $(DEMO_MINUTES) --seed 7
	$(VENV)/bin/stt-corpus gen-audio $(DEMO_DIR)/heldout --minutes $(DEMO_HELDOUT_MINUTES) --seed 8
	$(VENV)/bin/stt-corpus build --config infra/demo-build.yaml
	$(VENV)/bin/stt-corpus verify --store $(DEMO_DIR)/store --release demo
	$(VENV)/bin/stt-corpus train --store $(DEMO_DIR)/store --release demo --run demo --config infra/demo-train.yaml \
		--max-steps $(DEMO_STEPS)

bench: setup
	$(PY) bench/shard_write.py
	$(PY) bench/label.py
	$(PY) bench/two_pass.py
	$(PY) bench/stream.py
	$(PY) bench/curriculum.py
	$(PY) bench/stages.py

clean:
	rm -rf $(DEMO_DIR) .bench build *.egg-info
