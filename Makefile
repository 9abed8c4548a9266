# Two commands set up everything: `make demo` runs the main job, `make test` runs the tests.
# Each creates .venv and installs what it needs when missing.
#
# TORCH picks the torch build. The default is the CPU wheel; GPU users override it, e.g.
#   make test TORCH="torch==2.13.0 --index-url <your CUDA wheel index>"
# or install their own torch into .venv first and pass TORCH=torch.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
A ?= ../shared/data/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0001.jpg
B ?= ../shared/data/lfw/images/Aaron_Peirsol/Aaron_Peirsol_0002.jpg
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/siamface verify "$(A)" "$(B)"
	$(VENV)/bin/siamface analyze "$(A)" "$(B)"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
