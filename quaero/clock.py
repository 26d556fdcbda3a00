"""One clock for every time quaero stores: the metadata database's.

Leases, retry back-offs, heartbeats and the reaper's cut-offs are compared across
processes, often on different machines, so they must all be read off one clock. With
PostgreSQL that is the server's: each process keeps its offset to it (`DbClock.sync`,
which the worker's heartbeat thread runs every beat) and `DbClock.now()` is this host's
wall clock plus that offset. With SQLite every process shares one host, so the offset
stays 0.

`QUAERO_CLOCK_SKEW_SECONDS` is a test seam (like QUAERO_FAULT): it is added to this
process's wall clock, as if the host's clock were wrong by that much. libfaketime would
do the same from outside, but it makes Python's `time.sleep` fail with EINVAL.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
import time

import peewee

logger = logging.getLogger(__name__)

SKEW_ENV = "QUAERO_CLOCK_SKEW_SECONDS"
_SKEW = float(os.environ.get(SKEW_ENV) or 0.0)
#: A process that has not measured its offset for this long measures it on its next read
#: (the web process; a worker's heartbeat measures it every beat).
RESYNC_SECONDS = 10.0
#: PostgreSQL's time as epoch seconds, when the statement runs (not when its transaction began)
NOW_EXPR = "EXTRACT(EPOCH FROM clock_timestamp())"
NOW_SQL = f"SELECT {NOW_EXPR}"


def wall() -> float:
    """This host's wall clock, epoch seconds (plus the test seam's skew, if set)."""
    return time.time() + _SKEW


def utc_datetime(epoch: float) -> datetime.datetime:
    """A naive UTC datetime, as Huey keeps its schedule."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).replace(tzinfo=None)


class DbClock:
    """This process's reading of the database's clock: the wall clock plus an offset
    measured from a round trip (its midpoint), refreshed by `sync`."""

    def __init__(self, db: peewee.Database | None) -> None:
        self.db = db  # None: the local clock is the one clock (SQLite, one host)
        self.offset = 0.0
        self.round_trip: float | None = None
        self._synced_at = -1e9  # monotonic
        self._lock = threading.Lock()

    @property
    def skew(self) -> float:
        """How far this host's clock is ahead of the database's (seconds)."""
        return -self.offset

    def now(self) -> float:
        """The database's time now, epoch seconds."""
        if self.db is not None and time.monotonic() - self._synced_at > RESYNC_SECONDS:
            self._sync_quietly()
        return wall() + self.offset

    def sync(self) -> float:
        """Measure the offset to the database's clock; returns it. Raises if the
        database cannot be reached (the last offset is kept)."""
        if self.db is None:
            return 0.0
        with self._lock:
            before = wall()
            started = time.monotonic()
            (db_now,) = self.db.execute_sql(NOW_SQL).fetchone()
            took = time.monotonic() - started
            self.offset = float(db_now) - (before + took / 2)
            self.round_trip = took
            self._synced_at = time.monotonic()
        return self.offset

    def _sync_quietly(self) -> None:
        # never inside a caller's transaction (a failure there would abort it), and a
        # failure keeps the last offset: a clock does not move much in seconds
        if self.db.in_transaction():
            return
        try:
            self.sync()
        except peewee.PeeweeException as exc:
            self._synced_at = time.monotonic()  # do not retry on every read
            logger.warning("clock: could not read the database's clock: %s", exc)


_installed: DbClock | None = None


def install(process_clock: DbClock) -> None:
    """Make `process_clock` the one `now()` reads (the Store does, at start)."""
    global _installed
    _installed = process_clock


def now() -> float:
    """The database's time now (this process's installed clock), epoch seconds; for
    code that has no Store at hand (queries of the web, an executor's log lines)."""
    return _installed.now() if _installed is not None else wall()
