# The two commands the README promises: `make audit` and `make test`.
# `make kernels` runs a chosen set of tests inside Debian's 6.1 and 6.12 kernels
# under QEMU (tests/kernels/); `make test` runs it after the host's suite.
# Both set up what they need first, so they work on a fresh clone.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Tools the venv installs (ansible-lint calls ansible-* itself) come first.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: audit test lint unit integration fleet bench kernels clean system-deps

audit: $(VENV)/.requirements.stamp
	$(BIN)/ansible-playbook audit.yml

test: $(VENV)/.requirements-dev.stamp system-deps lint
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests
	$(MAKE) kernels

lint: $(VENV)/.requirements-dev.stamp
	$(BIN)/yamllint --strict .
	$(BIN)/ruff check .
	$(BIN)/ansible-lint

unit: $(VENV)/.requirements-dev.stamp
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/unit

integration: $(VENV)/.requirements-dev.stamp system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/integration

fleet: $(VENV)/.requirements-dev.stamp system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS) tests/fleet

bench: $(VENV)/.requirements-dev.stamp system-deps
	$(BIN)/python -m bench

kernels: $(VENV)/.requirements-dev.stamp system-deps
	$(BIN)/python -m tests.kernels $(KERNELS)

system-deps:
	./scripts/install-system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.requirements.stamp: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.requirements-dev.stamp: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.requirements.stamp $@

clean:
	rm -rf $(VENV) reports .pytest_cache .ruff_cache .cache
