"""Fixtures: real SQLite databases and Huey queues in tmp_path, a real worker and a
real waitress server on 127.0.0.1."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from quaero.config import Config
from quaero.services import Services, build_services
from tests.helpers import make_config, scale_out_backend, stop_worker, wait_for_worker_threads

# `make test-fast` (--hypothesis-profile=fast): fewer examples for the edit-test loop;
# `make test` runs hypothesis's default of 100.
settings.register_profile("fast", max_examples=10)


def pytest_generate_tests(metafunc):
    """Modules that set BACKENDS run their `backend` tests on each store listed."""
    if "backend" in metafunc.fixturenames:
        backends = getattr(metafunc.module, "BACKENDS", ["sqlite"])
        metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request) -> Iterator[dict]:
    """Config overrides of the store under test: SQLite files, or PostgreSQL + Redis."""
    if request.param == "sqlite":
        yield {}
    else:
        with scale_out_backend() as overrides:
            yield overrides


@pytest.fixture(autouse=True)
def no_worker_outlives_its_test():
    """Every test ends with no worker thread left (see `wait_for_worker_threads`)."""
    yield
    wait_for_worker_threads()


@pytest.fixture
def config(tmp_path: Path, backend: dict) -> Config:
    return make_config(tmp_path, **backend)


@pytest.fixture
def services(config: Config) -> Iterator[Services]:
    s = build_services(config)
    yield s
    s.close()


@pytest.fixture
def manager(services: Services):
    return services.manager


@pytest.fixture
def recovery(services: Services):
    return services.recovery


@pytest.fixture
def worker(services: Services):
    """A real Huey consumer (threads) with heartbeat and reaper, stopped after the test."""
    from quaero.worker import WorkerService

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = WorkerService(services)
    service.start()
    yield service
    stop_worker(service)
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@pytest.fixture
def live_server(services: Services) -> Iterator[str]:
    """The app under waitress on an ephemeral 127.0.0.1 port; yields its base URL."""
    from waitress.server import create_server

    from quaero.web import create_app

    server = create_server(create_app(services), host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=5)


@pytest.fixture
def client(services: Services):
    """Flask's test client (no worker): for request/response contract tests."""
    from quaero.web import create_app

    return create_app(services).test_client()


@pytest.fixture
def procs():
    """Start `run.py` subprocesses: `procs("serve", config_path)`; all killed afterwards."""
    from tests.procs import RunPy

    started = []

    def start(command, config, env=None):
        p = RunPy(command, config, env).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def own_pg():
    """This test's own PostgreSQL on a free port (tests/services.py), free to break."""
    from tests.services import own_postgres

    with own_postgres() as server:
        yield server


@pytest.fixture
def own_redis():
    """This test's own redis-server on a free port (tests/services.py), free to kill."""
    from tests.services import own_redis as start_redis

    with start_redis() as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that ran a `stack` of run.py processes (the fault scenarios) shows
    the end of each process's log: CI keeps nothing else of them."""
    outcome = yield
    report = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when != "call" or not report.failed or not hasattr(stack, "workers"):
        return
    for i, proc in enumerate([stack.web, *stack.workers]):
        if proc.proc is not None:
            report.sections.append(
                (f"{proc.command}-{i} log (last 6000 characters)", proc.output()[-6000:])
            )
