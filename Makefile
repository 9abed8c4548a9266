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
# `make demo` serves the web app (siamface serve: the UI and the REST API) on HOST:PORT with
# the shipped model and example photos, offline. `make demo-cli` verifies the shipped photos
# (src/siamface/examples, credits in its README) on the command line: A and B are one person,
# C another; `make demo-cli A=x.jpg B=y.jpg C=z.jpg` uses yours.
HOST ?= 127.0.0.1
PORT ?= 7860
EXAMPLES := src/siamface/examples
A ?= $(EXAMPLES)/kofi_annan_1.jpg
B ?= $(EXAMPLES)/kofi_annan_2.jpg
C ?= $(EXAMPLES)/serena_williams_1.jpg
PYTEST_ARGS ?=

.PHONY: install demo demo-cli test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[dev,web]"
	touch $(STAMP)

install: $(STAMP)

# Nothing leaves the machine: analytics off, no Hugging Face calls; Ctrl-C stops the server.
demo: $(STAMP)
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 \
	  $(VENV)/bin/siamface serve --host "$(HOST)" --port "$(PORT)"

# verify exits 1 for NO MATCH (a verdict, not a failure): the demo fails only on codes >= 2.
demo-cli: $(STAMP)
	$(VENV)/bin/siamface verify "$(A)" "$(B)" || [ $$? -eq 1 ]
	$(VENV)/bin/siamface verify "$(A)" "$(C)" || [ $$? -eq 1 ]
	$(VENV)/bin/siamface analyze "$(A)" "$(B)" "$(C)"

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info src/*.egg-info
