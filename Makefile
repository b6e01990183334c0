# funnel_lab: `make report` renders the reports on the demo data, `make test` runs the tests.
# Both create or update .venv with a Python >= 3.12 found on this machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
REPORT_DIR ?= reports
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/.cache/pytensor
export MPLCONFIGDIR ?= $(CURDIR)/.cache/matplotlib

# The first interpreter >= 3.12 that actually runs (pyenv shims can exist and still fail).
find_python = for c in python3 python3.13 python3.12 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do \
	  if "$$c" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then echo "$$c"; break; fi; \
	done

.PHONY: help report test lint bench clean venv

help:
	@echo "make report   render the notebooks on the demo data into $(REPORT_DIR)/"
	@echo "make test     run the test suite"
	@echo "make lint     ruff check"
	@echo "make bench    run the benchmarks in benchmarks/"

$(VENV)/bin/python:
	@py=$$($(find_python)); \
	if [ -z "$$py" ]; then \
	  echo "funnel_lab needs Python >= 3.12 (PyMC 6 and ArviZ 1 require it) and found none." >&2; \
	  echo "Install one (for example 'pyenv install 3.12') and run make again." >&2; exit 1; \
	fi; \
	echo "Creating $(VENV) with $$py ($$($$py --version))"; \
	"$$py" -m venv $(VENV)

$(STAMP): $(VENV)/bin/python pyproject.toml
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e .
	$(VENV)/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $@

$(DEV_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	@touch $@

venv: $(STAMP)

report: $(STAMP)
	@mkdir -p .cache
	$(VENV)/bin/funnel-lab report --all --out $(REPORT_DIR)
	@echo "Reports written to $(REPORT_DIR)/index.html"

test: $(DEV_STAMP)
	@mkdir -p .cache
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .cache $(REPORT_DIR)
