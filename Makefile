# The two commands: `make demo` and `make test`. Each sets up everything it needs on a fresh
# machine (Debian packages, .venv, the package and its extras) and then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= .demo
DEMO_MINUTES ?= 4

.PHONY: demo test setup system-deps bench clean

system-deps:
	@bash infra/install-system-deps.sh

# Re-installs when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train]'
	@touch $@

setup: system-deps $(VENV)/.installed

test: setup
	$(PY) -m pytest

demo: setup
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/stt-corpus gen-audio $(DEMO_DIR)/raw --minutes $(DEMO_MINUTES) --seed 7
	$(VENV)/bin/stt-corpus build --config infra/demo-build.yaml
	$(VENV)/bin/stt-corpus verify --store $(DEMO_DIR)/store --release demo
	$(VENV)/bin/stt-corpus train --store $(DEMO_DIR)/store --release demo --run demo --max-steps 40 \
		--eval-every 20 --checkpoint-every 20 --eval-splits train,validation,test

bench: setup
	$(PY) bench/shard_write.py
	$(PY) bench/label.py
	$(PY) bench/two_pass.py
	$(PY) bench/stream.py
	$(PY) bench/curriculum.py

clean:
	rm -rf $(DEMO_DIR) .bench build *.egg-info
