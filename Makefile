# Set-up and the two Quickstart jobs. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONUNBUFFERED := 1

.PHONY: lint test test-tensorflow test-jax test-torch test-slow fuzz demo bench clean
# pytest once per Keras backend (Keras picks its backend once per process);
# tests/conftest.py selects what runs off TensorFlow.
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider

# `make fuzz`: a long random search of the property-based fuzzer
# (tests/test_fuzz.py); FUZZ_EXAMPLES models, failures shrunk.
FUZZ_EXAMPLES ?= 3000

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed-test: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[tensorflow,test,jax,torch]"
	touch $@

$(VENV)/.installed-demo: setup.cfg pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[tensorflow,demo]"
	touch $@

test: test-tensorflow test-jax test-torch

# Style (pyproject.toml's [tool.ruff]): unused names, import order, lines.
lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

test-tensorflow: $(VENV)/.installed-test
	KERAS_BACKEND=tensorflow $(PYTEST) tests

test-jax: $(VENV)/.installed-test
	KERAS_BACKEND=jax $(PYTEST) tests

test-torch: $(VENV)/.installed-test
	KERAS_BACKEND=torch $(PYTEST) tests

test-slow: $(VENV)/.installed-test
	KERAS_BACKEND=tensorflow $(PYTEST) -m slow tests

fuzz: $(VENV)/.installed-test
	KERAS_SLIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) KERAS_SLIM_FUZZ_RANDOM=1 \
		KERAS_BACKEND=tensorflow $(PYTEST) -s tests/test_fuzz.py

demo: $(VENV)/.installed-demo
	$(BIN)/python -m examples.demo

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/slim_speed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
