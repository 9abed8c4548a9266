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
# The demo's photos ship inside the package (src/siamface/examples, credits in its README):
# A and B are one person, C another. `make demo A=x.jpg B=y.jpg C=z.jpg` uses yours.
EXAMPLES := src/siamface/examples
A ?= $(EXAMPLES)/kofi_annan_1.jpg
B ?= $(EXAMPLES)/kofi_annan_2.jpg
C ?= $(EXAMPLES)/serena_williams_1.jpg
PYTEST_ARGS ?=

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# verify exits 1 for NO MATCH (a verdict, not a failure): the demo fails only on codes >= 2.
demo: $(STAMP)
	$(VENV)/bin/siamface verify "$(A)" "$(B)" || [ $$? -eq 1 ]
	$(VENV)/bin/siamface verify "$(A)" "$(C)" || [ $$? -eq 1 ]
	$(VENV)/bin/siamface analyze "$(A)" "$(B)" "$(C)"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
