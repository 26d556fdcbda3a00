# quaero: `make run` starts web + workers on 127.0.0.1:8085; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast lint format migrate system-deps clean bench bench-smoke

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

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one),
# Debian's wget, the crawl benchmark's yardstick, and the PostgreSQL and Redis binaries
# the fault tests start instances of their own from (tests/services.py).
system-deps:
	@command -v chromium >/dev/null 2>&1 && command -v wget >/dev/null 2>&1 || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium wget; }
	@command -v redis-server >/dev/null 2>&1 && \
	  { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
	  { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql redis-server; }

lint: $(VENV)/.deps
	$(VENV)/bin/ruff check quaero tests bench run.py
	$(VENV)/bin/ruff format --check quaero tests bench run.py

format: $(VENV)/.deps
	$(VENV)/bin/ruff format quaero tests bench run.py
	$(VENV)/bin/ruff check --fix quaero tests bench run.py

test: $(VENV)/.deps system-deps lint
	$(PY) -m pytest

# The edit-test loop (under a minute): no end-to-end, browser or fault tests, and
# property tests with 10 examples instead of 100. `make test` before committing.
test-fast: $(VENV)/.deps
	$(PY) -m pytest -q -m "not e2e and not browser and not faults" --hypothesis-profile=fast

# Benchmarks P1-P8 (bench/README.md): rq from requirements-bench.txt, Debian's wget.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--only P1,P3".
bench: $(VENV)/.deps system-deps
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m bench.run $(BENCH_ARGS)

bench-smoke: $(VENV)/.deps system-deps
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	$(PY) -m bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The README's screenshots of the jobs page (docs/*.png): a local serve and crawl, Chromium.
.PHONY: screenshots
screenshots: $(VENV)/.deps system-deps
	$(PY) -m tests.screenshots
