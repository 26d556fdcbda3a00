# quaero: `make run` starts web + workers on 127.0.0.1:8085; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip install --quiet --disable-pip-version-check
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# What running needs (requirements.txt) and what testing adds (requirements-dev.txt),
# each with its own stamp: `make run` never installs pytest, Playwright or schemathesis.
RUN_DEPS := $(VENV)/.deps-run
DEV_DEPS := $(VENV)/.deps-dev
BENCH_DEPS := $(VENV)/.deps-bench

.PHONY: run demo test test-long test-fast lint format migrate system-deps axe clean bench bench-smoke screenshots

$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "quaero needs Python 3.11+")'
	$(PYTHON) -m venv $(VENV)

$(RUN_DEPS): requirements.txt | $(VENV)/bin/python
	$(PIP) -r requirements.txt
	touch $@

$(DEV_DEPS): requirements-dev.txt $(RUN_DEPS)
	$(PIP) -r requirements-dev.txt
	touch $@

# What only the benchmarks and their smoke tests need (rq, Scrapy): `make bench` and
# `make test-long` install it, `make test` and `make run` never do.
$(BENCH_DEPS): requirements-bench.txt $(DEV_DEPS)
	$(PIP) -r requirements-bench.txt
	touch $@

run: $(RUN_DEPS)
	$(PY) run.py migrate
	$(PY) run.py serve

# The offline demo (README "Try it offline"): a bundled site on 127.0.0.1, allowed
# explicitly in examples/demo.toml, crawled by a local serve.
demo: $(RUN_DEPS)
	$(PY) run.py demo --config examples/demo.toml

migrate: $(RUN_DEPS)
	$(PY) run.py migrate

# Debian's Chromium for the browser tests (Playwright drives it; it never downloads one),
# Debian's wget, the crawl benchmark's and depth tests' yardstick, npm (fetches axe-core,
# below), Debian's prometheus for promtool (tests/test_metrics.py checks /metrics with it),
# and the PostgreSQL and Redis binaries the fault tests start instances of their own from
# (tests/services.py). Only the missing ones are installed: where Node.js brings its own
# npm, Debian's npm package would conflict with it.
system-deps:
	@missing=""; \
	  for c in chromium:chromium wget:wget npm:npm promtool:prometheus redis-server:redis-server; do \
	    command -v $${c%%:*} >/dev/null 2>&1 || missing="$$missing $${c#*:}"; done; \
	  command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	    missing="$$missing postgresql"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; fi

# axe-core for the accessibility test: a pinned release fetched with `npm pack` into
# .cache/ and checked against its sha512 (tests/browser/axe.py).
axe: $(DEV_DEPS) system-deps
	$(PY) -m tests.browser.axe

lint: $(DEV_DEPS)
	$(VENV)/bin/ruff check quaero tests bench examples run.py
	$(VENV)/bin/ruff format --check quaero tests bench examples run.py

format: $(DEV_DEPS)
	$(VENV)/bin/ruff format quaero tests bench examples run.py
	$(VENV)/bin/ruff check --fix quaero tests bench examples run.py

# `make test` (under 10 minutes on two cores) leaves out the fault scenarios and the long
# tests; `make test-long` runs exactly those; CI (.ci/run) runs both: the whole suite.
test: $(DEV_DEPS) system-deps axe lint
	$(PY) -m pytest -m "not faults and not long"

test-long: $(DEV_DEPS) $(BENCH_DEPS) system-deps
	$(PY) -m pytest -m "faults or long"

# The edit-test loop (under a minute): no end-to-end, browser or fault tests, and
# property tests with 10 examples instead of 100. `make test` before committing.
test-fast: $(DEV_DEPS)
	$(PY) -m pytest -q -m "not e2e and not browser and not faults" --hypothesis-profile=fast

# Benchmarks P1-P12 (bench/README.md): rq and Scrapy from requirements-bench.txt,
# Debian's wget.
# BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--only P1,P3".
bench: $(BENCH_DEPS) system-deps
	$(PY) -m bench.run $(BENCH_ARGS)

bench-smoke: $(BENCH_DEPS) system-deps
	$(PY) -m bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The README's screenshots of the jobs page (docs/*.png): a local serve and crawl, Chromium.
screenshots: $(DEV_DEPS) system-deps
	$(PY) -m tests.screenshots
