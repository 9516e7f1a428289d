# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MLP := $(VENV)/bin/mlpatterns
STAMP := $(VENV)/.installed

.PHONY: help venv services services-down demo test test-fast lint bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The lock is complete (pip check proves it): nothing to resolve. Byte-compiling stays on: with
	@# PYTHONDONTWRITEBYTECODE set (as on this project's machines) each process would compile its
	@# imports anew.
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements.lock
	$(PY) -m pip check
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the pinned dependencies

services: $(STAMP)  ## start Redis, Kafka, HBase and nginx on 127.0.0.1
	$(MLP) services up

services-down: $(STAMP)  ## stop every server this checkout started
	$(MLP) services down

demo: $(STAMP)  ## run the example deployments end to end
	$(MLP) services up
	$(PY) scripts/demo.py

test: $(STAMP)  ## start the servers and run the whole test suite
	$(MLP) services up
	status=0; $(PY) scripts/test.py $(PYTEST_ARGS) || status=$$?; \
	  if [ -n "$$CI" ]; then $(MLP) services down || true; fi; exit $$status

test-fast: $(STAMP)  ## the tests that need no server (a quick check; `make test` runs everything)
	$(PY) -m pytest -m "not servers" $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff and mypy
	$(VENV)/bin/ruff check shared patterns tests bench scripts
	$(VENV)/bin/ruff format --check shared patterns tests bench scripts
	$(VENV)/bin/mypy shared patterns

BENCH_PLOTS ?= .mlpatterns/bench

bench: $(STAMP)  ## run every benchmark in bench/ (a table with its same-run baseline; plots in BENCH_PLOTS)
	$(MLP) services up
	for f in bench/[a-z]*.py; do echo "== $$f"; \
	  $(PY) $$f --plot $(BENCH_PLOTS)/$$(basename $$f .py).png || exit 1; done

clean:  ## stop this checkout's servers, then remove the venv, server data and model registry
	@# Deleting .services under running servers would leave them up without pid files.
	if [ -x $(MLP) ] && [ -d .services ]; then \
	  MLPATTERNS_SERVICES_DIR="$(CURDIR)/.services" $(MLP) services down || true; fi
	rm -rf $(VENV) .services .mlpatterns .cache
