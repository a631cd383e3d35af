# Set-up and the two Quickstart jobs. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONUNBUFFERED := 1

.PHONY: test test-slow fuzz demo bench clean

# `make fuzz`: a long random search of the property-based fuzzer
# (tests/test_fuzz.py); FUZZ_EXAMPLES models, failures shrunk.
FUZZ_EXAMPLES ?= 3000

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

fuzz: $(VENV)/.installed-test
	KERAS_SLIM_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) KERAS_SLIM_FUZZ_RANDOM=1 \
		$(BIN)/python -m pytest -q -p no:cacheprovider -s tests/test_fuzz.py

demo: $(VENV)/.installed-demo
	$(BIN)/python -m keras_slim.demo

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/slim_speed.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
