# The README's two commands: `make demo` and `make test`. Both set themselves up on a fresh
# machine (Python, pip, Node/npm) and reinstall nothing when nothing changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
DEV_INSTALLED := $(VENV)/.installed-dev
NODE_PEERS := tests/interop/node_modules/.package-lock.json
WEB_BUNDLE := web/dist/index.html

.PHONY: demo test lint typecheck unit fuzz-smoke fuzz fuzz-long bench clean

demo: $(INSTALLED) $(WEB_BUNDLE)
	$(PY) -m sticker_search.demo

test: $(DEV_INSTALLED) $(NODE_PEERS) lint typecheck fuzz-smoke unit

lint: $(DEV_INSTALLED)
	$(VENV)/bin/ruff check .

typecheck: $(DEV_INSTALLED)
	$(VENV)/bin/mypy

unit: $(DEV_INSTALLED) $(NODE_PEERS) $(WEB_BUNDLE)
	$(PY) -m pytest $(PYTEST_ARGS)

# Coverage-guided fuzzing of every decoder of untrusted input (fuzz/, docs/RELIABILITY.md):
# a second per target in `make test` (two at a time), 30 s per target, or 10 minutes per
# target, one at a time, niced.
fuzz-smoke: $(DEV_INSTALLED)
	$(PY) -m fuzz --seconds 1 --jobs 2

fuzz: $(DEV_INSTALLED)
	$(PY) -m fuzz --seconds 30 --jobs 2

fuzz-long: $(DEV_INSTALLED)
	nice -n 19 $(PY) -m fuzz --seconds 600

bench: $(INSTALLED)
	$(PY) -m bench all

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# With the postgres extra: every documented --db/--spent-db takes a postgresql:// DSN.
$(INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[postgres]'
	touch $@

$(DEV_INSTALLED): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	touch $(INSTALLED) $@

$(NODE_PEERS): tests/interop/package.json tests/interop/package-lock.json
	cd tests/interop && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The private sticker search web page (web/): its pinned packages (npm ci; playwright-core for
# the browser tests, which drive the Debian chromium: no browser is downloaded) and the bundle.
.PHONY: web
web: $(WEB_BUNDLE)

$(WEB_BUNDLE): web/package.json web/package-lock.json web/build.mjs $(wildcard web/src/*)
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	cd web && npm run --silent build

clean:
	rm -rf $(VENV) tests/interop/node_modules web/node_modules web/dist .mypy_cache .ruff_cache .pytest_cache
