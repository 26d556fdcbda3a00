"""quaero.db's PostgreSQL pool replaces connections that died under it (terminated
backends, a restarted server) instead of failing every later query of the thread."""

import threading
import time

import peewee
import pytest

from quaero.db import CommitOutcomeUnknown, ConnectionLost, fail_fast, open_database
from quaero.models import Job
from quaero.store import RETRYABLE_DB_ERRORS, Store
from tests.helpers import make_config

pytestmark = pytest.mark.faults


@pytest.fixture
def db(own_pg):
    database = open_database(own_pg.url, max_connections=4, reconnect_wait=10)
    yield database
    database.close_all()


def in_thread(fn):
    """Run `fn` in a new thread (its own connection and fail-fast flag); return/raise."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_query_after_backend_terminated_uses_a_new_connection(db, own_pg):
    assert db.execute_sql("SELECT 1").fetchone() == (1,)
    assert own_pg.terminate_backends() >= 1
    time.sleep(0.1)
    assert db.execute_sql("SELECT 2").fetchone() == (2,)
    assert len(db._in_use) == 1  # the dead connection left the pool


def test_transaction_that_lost_its_connection_is_void_and_retried(db, own_pg):
    db.execute_sql("CREATE TABLE t (n INTEGER)")
    with pytest.raises(ConnectionLost), db.atomic():
        db.execute_sql("INSERT INTO t VALUES (1)")
        own_pg.terminate_backends()
        time.sleep(0.1)
        db.execute_sql("INSERT INTO t VALUES (2)")
    assert db.execute_sql("SELECT COUNT(*) FROM t").fetchone() == (0,)

    # Store.transaction runs it again on a fresh connection
    config = make_config(own_pg.folder)
    store = Store(db, queue=None, config=config)
    calls = []

    def insert():
        calls.append(1)
        db.execute_sql("INSERT INTO t VALUES (3)")
        if len(calls) == 1:
            own_pg.terminate_backends()
            time.sleep(0.1)
        db.execute_sql("INSERT INTO t VALUES (4)")

    store.transaction(insert)
    assert len(calls) == 2
    assert db.execute_sql("SELECT n FROM t ORDER BY n").fetchall() == [(3,), (4,)]


def test_a_worker_transaction_whose_idle_connection_died_runs_again(db, own_pg):
    """A worker's transaction sends its BEGIN with its first statement; if the thread's
    idle connection died meanwhile, nothing was started and the transaction runs again
    on a fresh connection."""
    db.execute_sql("CREATE TABLE t (n INTEGER)")
    store = Store(db, queue=None, config=make_config(own_pg.folder))
    guard = "SELECT pg_advisory_xact_lock_shared(1, 2)"
    calls = []

    def write():
        calls.append(1)
        db.execute_first(guard)  # with the BEGIN, as a finish's tree guard
        db.execute_sql("INSERT INTO t VALUES (5)")

    store.transaction(write, durable=False)  # opens this thread's connection
    own_pg.terminate_backends()
    time.sleep(0.1)
    store.transaction(write, durable=False)
    assert len(calls) == 3  # the second ran twice: its BEGIN found the connection dead
    assert db.execute_sql("SELECT n FROM t").fetchall() == [(5,), (5,)]


def test_connection_lost_at_commit_is_not_called_retryable(db, own_pg, monkeypatch):
    db.execute_sql("SELECT 1")
    original = peewee.PostgresqlDatabase.commit

    def commit_after_kill(self):
        own_pg.terminate_backends()
        time.sleep(0.1)
        return original(self)

    monkeypatch.setattr(peewee.PostgresqlDatabase, "commit", commit_after_kill)
    with pytest.raises(CommitOutcomeUnknown) as lost, db.atomic():
        db.execute_sql("SELECT 1")
    # Store.transaction must not run it again: it may have been written
    assert not any(message in str(lost.value) for message in RETRYABLE_DB_ERRORS)


def test_restart_workers_wait_web_fails_fast(db, own_pg):
    db.execute_sql("SELECT 1")
    own_pg.stop("immediate")
    started = time.monotonic()

    def web_request():
        fail_fast()
        return db.execute_sql("SELECT 1").fetchone()

    with pytest.raises(peewee.OperationalError):
        in_thread(web_request)
    assert time.monotonic() - started < 2

    restart = threading.Timer(2.0, own_pg.start)
    restart.start()
    try:
        # a worker thread waits (reconnect_wait = 10 s) and carries on when it is back
        assert in_thread(lambda: Job.select().count()) == 0
    finally:
        restart.join()
    assert time.monotonic() - started >= 2
    assert db.execute_sql("SELECT 3").fetchone() == (3,)  # this thread's dead one replaced
