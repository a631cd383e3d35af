# Set-up and the two Quickstart jobs. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONUNBUFFERED := 1

.PHONY: test test-slow demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

$(VENV)/.installed-demo: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[demo]"
	touch $@

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow tests

demo: $(VENV)/.installed-demo
	$(BIN)/python -m keras_slim.demo

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/slim_speed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
