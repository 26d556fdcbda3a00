# quaero: `make run` starts web + workers on 127.0.0.1:8085; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint format migrate browser clean

$(VENV)/.deps: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "quaero needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(VENV)/.deps
	$(PY) run.py migrate
	$(PY) run.py serve

migrate: $(VENV)/.deps
	$(PY) run.py migrate

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one).
browser:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check quaero tests run.py
	$(VENV)/bin/ruff format --check quaero tests run.py

format: $(VENV)/.deps
	$(VENV)/bin/ruff format quaero tests run.py
	$(VENV)/bin/ruff check --fix quaero tests run.py

test: $(VENV)/.deps browser lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
