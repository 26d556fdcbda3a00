"""SQLite's write-ahead log is copied into the database by a worker's checkpoint
thread, beside the writers, not by whichever job's commit finds it long."""

from __future__ import annotations

import logging
import time

from quaero.models import JobLog
from tests.helpers import wait_for

FIELDS = [JobLog.job_id, JobLog.level, JobLog.message, JobLog.created_at]


def test_commits_leave_the_checkpoint_to_the_worker_thread(services, worker, monkeypatch):
    (pages,) = services.db.execute_sql("PRAGMA wal_autocheckpoint").fetchone()
    assert pages == 4_000  # a commit checkpoints only past this backstop
    results = []
    checkpoint = services.store.checkpoint
    monkeypatch.setattr(services.store, "checkpoint", lambda: results.append(checkpoint()))
    root = services.manager.create_root("noop", {})
    for _ in range(20):  # frames in the log for the thread to copy
        with services.db.atomic():
            rows = [(root.id, "info", "x" * 500, 0.0)] * 50
            JobLog.insert_many(rows, fields=FIELDS).execute()
    wait_for(lambda: any(log > 0 and done == log for _, log, done in results), timeout=5)


def test_a_failing_checkpoint_warns_once_and_is_retried(services, worker, monkeypatch, caplog):
    calls = []

    def failing():
        calls.append(time.monotonic())
        raise OSError("disk full")

    monkeypatch.setattr(services.store, "checkpoint", failing)
    with caplog.at_level(logging.WARNING, logger="quaero.worker"):
        wait_for(lambda: len(calls) >= 3, timeout=5)
    warnings = [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
    assert len(warnings) == 1 and "disk full" in warnings[0].getMessage()
