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

.PHONY: audit test lint unit integration fleet bench kernels clean system-deps collection sanity

audit: $(VENV)/.requirements.stamp
	$(BIN)/ansible-playbook audit.yml

test: $(VENV)/.requirements-dev.stamp system-deps lint sanity
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

# The Galaxy collection, generated from this playbook project (never kept by hand):
# build/collection/ansible_collections/portpool/portpool and build/dist/*.tar.gz.
collection: $(VENV)/.requirements.stamp
	$(BIN)/python scripts/build_collection.py

# ansible-test sanity on the generated collection, offline: the wheels its sanity
# venvs need are fetched once, here, with the rest of the requirements.
sanity: collection build/sanity-wheels/.stamp
	$(BIN)/python scripts/sanity.py

build/sanity-wheels/.stamp: requirements.txt | $(VENV)/.requirements.stamp
	$(BIN)/python scripts/sanity.py --wheels
	touch $@

system-deps:
	./scripts/install-system-deps

# A fresh Debian has no venv module (python3-venv): install-system-deps --python
# adds it first. A venv left half-made by a failure is removed, so the next run
# starts over instead of taking it for done.
$(BIN)/python:
	PYTHON=$(PYTHON) ./scripts/install-system-deps --python
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); exit 1; }
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.requirements.stamp: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.requirements-dev.stamp: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.requirements.stamp $@

clean:
	rm -rf $(VENV) build reports .pytest_cache .ruff_cache .cache
