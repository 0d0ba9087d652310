# acml-dist: `make demo` runs the whole pipeline on embedded defaults; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.acml-setup
# Extra pip options (e.g. PIP_OPTS="--extra-index-url https://download.pytorch.org/whl/cpu" where the
# CPU torch wheel is not on a local find-links path).
PIP_OPTS ?=

.PHONY: setup demo demo-stop test test-unit lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip $(PIP_OPTS)
	$(PIP) install -q -c constraints-cpu.txt $(PIP_OPTS) -e ".[dev,umap,spectra]"
	# Data-only packages: they pin ancient dependencies, so no deps (we only read their files).
	$(PIP) install -q --no-deps molsets==0.3.1 rxnfp==0.1.0 $(PIP_OPTS)
	# matchms (MGF/MSP readers) and sparsestack pin scipy<1.17 / networkx<3.5, which would downgrade this
	# stack: no deps; their runtime dependencies come with the `spectra` extra (checked by the reader tests).
	$(PIP) install -q --no-deps matchms==0.33.1 sparsestack==0.7.1 $(PIP_OPTS)
	$(PY) -m acml_dist.data.datasets fetch
	@touch $(STAMP)
	@echo "setup done: $(VENV)"

demo: setup
	@bash scripts/demo.sh

demo-stop:
	@bash scripts/demo.sh --stop

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest tests

test-unit: setup
	$(VENV)/bin/pytest tests -m unit

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) benchmarks/featurize.py --quick
	$(PY) benchmarks/embed.py --quick
	$(PY) benchmarks/train_step.py --quick

clean:
	rm -rf .demo runs outputs .pytest_cache
