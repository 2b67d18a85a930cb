# The README's two commands: `make demo` and `make test`. Both set themselves up on a fresh
# machine (Python, pip, Node/npm) and reinstall nothing when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev
NODE_PEERS := tests/interop/node_modules/.package-lock.json

.PHONY: demo test lint typecheck unit bench clean

demo: $(INSTALLED)
	$(PY) -m sticker_search.demo

test: $(DEV_INSTALLED) $(NODE_PEERS) lint typecheck unit

lint: $(DEV_INSTALLED)
	$(VENV)/bin/ruff check .

typecheck: $(DEV_INSTALLED)
	$(VENV)/bin/mypy

unit: $(DEV_INSTALLED) $(NODE_PEERS)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(INSTALLED)
	$(PY) -m bench all

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	touch $(INSTALLED) $@

$(NODE_PEERS): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) tests/interop/node_modules .mypy_cache .ruff_cache .pytest_cache
