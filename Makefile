# Two entry points that work on a fresh clone (Python 3.11+, pip reaching PyPI):
#   make run    set everything up, then run the whole pipeline on the default corpus
#   make test   set everything up, then run the test suite and the import-layer contract
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Exactly this torch: a CPU build lies on disk on our machines; any other spec pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: setup setup-dev run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[default-corpus]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

run: setup
	$(BIN)/nlp-pipeline run $(ARGS)

test: setup-dev
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(ARGS)

bench: setup-dev
	# fastai asks for torchvision; pinning torch in the same call keeps the CPU build (else pip swaps in a CUDA torch)
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[bench]"
	@echo "benchmarks: see benchmarks/README.md"

clean:
	rm -rf $(VENV) build *.egg-info
