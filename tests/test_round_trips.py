"""PostgreSQL round trips of the workers' hot path: each costs the worker and the server
CPU, and P6/P9 (many worker processes on 2 cores) are bound by that CPU."""

import contextlib

import psycopg
import pytest

from quaero.models import ChildSpec, Job

BACKENDS = ["postgresql"]

W = "testhost:1:aaaaaa"


@pytest.fixture
def messages(monkeypatch) -> list[str]:
    """What any psycopg connection sends from now on, one entry per round trip: a
    statement, or the statements of a pipeline joined by "; "."""
    sent: list[str] = []
    building: list[list[str]] = []  # the statements of the pipeline being built
    execute = psycopg.Cursor.execute
    pipeline = psycopg.Connection.pipeline

    def counted(cursor, query, params=None, **kwargs):
        (building[-1] if building else sent).append(str(query))
        return execute(cursor, query, params, **kwargs)

    @contextlib.contextmanager
    def grouped(connection):
        building.append([])
        try:
            with pipeline(connection) as p:
                yield p
        finally:
            sent.append("; ".join(building.pop()))

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)
    monkeypatch.setattr(psycopg.ClientCursor, "execute", counted)
    monkeypatch.setattr(psycopg.Connection, "pipeline", grouped)
    return sent


def test_a_finish_sends_its_begin_with_the_trees_guard(manager, messages):
    root = manager.claim(manager.create_root("fanout", {}).id, W)
    (child_id,) = manager.spawn_children(root, [ChildSpec("noop", {})])
    job = manager.claim(child_id, W)
    messages.clear()
    assert manager.complete(job, W, {"ok": True}, ([("info", "done", 1.0)], 1.0))
    begins = [m for m in messages if m.startswith("BEGIN")]
    assert len(begins) == 1 and "pg_advisory_xact_lock_shared" in begins[0], messages
    assert len(messages) <= 4, messages  # BEGIN+guard, finish, logs, shift+totals+COMMIT
    last = messages[-1]
    assert "n_completed" in last and "job_totals" in last and last.endswith("COMMIT"), last
    assert Job.get_by_id(job.id).status == "completed"


def test_a_transaction_that_writes_nothing_sends_nothing(services, messages):
    services.store.transaction(lambda: None, durable=False)
    assert messages == []


def test_a_pending_begin_is_its_own_databases(services):
    """A worker transaction's BEGIN waits for its first statement; a statement meanwhile
    on another database object in that thread (a thread of a previous test's worker,
    whose models now point at the next test's database) must not take it: that BEGIN
    would leave the other connection idle in a transaction, holding its locks forever."""
    from quaero import db as db_module

    other = db_module.make_database(services.config.database.url, max_connections=1)
    try:
        db_module.asynchronous_commit(True)
        try:
            with services.db.atomic():  # its BEGIN waits for a statement of its own
                other.execute_sql("SELECT 1")
        finally:
            db_module.asynchronous_commit(False)
        status = other.connection().info.transaction_status
        assert status == psycopg.pq.TransactionStatus.IDLE, status
    finally:
        other.close_all()


def test_the_claim_and_the_finishs_last_statements_are_prepared(manager, services):
    """The hot path's statements sent with a COMMIT are parsed and planned once per
    connection, not on every job (half of PostgreSQL's CPU in P6 was that)."""
    root = manager.claim(manager.create_root("fanout", {}).id, W)
    ids = manager.spawn_children(root, [ChildSpec("noop", {}) for _ in range(8)])
    for child_id in ids:
        assert manager.complete(manager.claim(child_id, W), W, None)
    prepared = [
        s for (s,) in services.db.execute_sql("SELECT statement FROM pg_prepared_statements")
    ]
    assert any("SET status = 'running'" in s for s in prepared), prepared  # the claim
    assert any("n_completed = n_completed +" in s for s in prepared), prepared  # the shift
    assert any("INSERT INTO job_totals" in s for s in prepared), prepared


def test_each_worker_thread_warms_its_connection_before_its_first_job(services, monkeypatch):
    """A new worker's first jobs do not pay for a new server process (P6's first wave)."""
    import signal
    import threading

    from quaero.worker import WorkerService
    from tests.helpers import stop_worker, wait_for

    warmed: set[int] = set()
    warm_up = services.store.warm_up
    monkeypatch.setattr(
        services.store, "warm_up", lambda: warm_up() or warmed.add(threading.get_ident())
    )
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    service = WorkerService(services)
    service.start()
    try:
        wait_for(lambda: len(warmed) == services.config.queue.num_workers, timeout=10)
        assert Job.select().count() == 0  # before any job
    finally:
        stop_worker(service)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
