"""The metadata database: connection from a URL, SQLite pragmas, and migrations.

Models are bound to `database_proxy`; `open_database` creates the real database (SQLite
by default, PostgreSQL for scale-out) and points the proxy at it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlparse

import peewee
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase

from quaero import resource_dir

logger = logging.getLogger(__name__)

#: What a process does when the database is away: these errors mean "try again later"
#: (the web answers 503), never a bug. A SQLite "database is locked" is one too.
UNAVAILABLE_ERRORS = (peewee.OperationalError, peewee.InterfaceError, MaxConnectionsExceeded)

database_proxy = peewee.DatabaseProxy()

MIGRATIONS_DIR = resource_dir("migrations")

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30_000,  # ms: writers queue up instead of failing
    "synchronous": "normal",  # safe with WAL; a power cut may lose the last commits only
    "cache_size": -8_000,  # KiB per connection: each web thread has one (issue 13: RSS)
    # pages (16 MiB): a commit copies the log into the database only past this backstop;
    # a worker's checkpoint thread does it ten times a second (quaero.worker)
    "wal_autocheckpoint": 4_000,
    "journal_size_limit": 16 * 1024 * 1024,  # bytes: a log that grew past it shrinks back
    "foreign_keys": 0,
}

PRIMARY_KEYS = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "postgresql": "BIGSERIAL PRIMARY KEY",
}


def dialect(db: peewee.Database) -> str:
    """'sqlite' or 'postgresql'."""
    return "postgresql" if isinstance(db, peewee.PostgresqlDatabase) else "sqlite"


def make_database(url: str, max_connections: int = 32) -> peewee.Database:
    """Create (not connect) the peewee database for a `sqlite:///` or `postgresql://` URL."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:]) if parsed.path.startswith("/") else parsed.path
        if not path:
            raise ValueError(f"database url {url!r}: no SQLite file path")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # BEGIN IMMEDIATE: a write transaction takes the write lock at once, so two
        # writers never deadlock upgrading a read lock; the busy timeout queues them.
        return peewee.SqliteDatabase(
            path, pragmas=SQLITE_PRAGMAS, lock_type="IMMEDIATE", timeout=30
        )
    if parsed.scheme in ("postgresql", "postgres"):
        params = dict(parse_qsl(parsed.query))
        # a server that is down or cut off must fail fast and be noticed, not hang a thread
        params.setdefault("connect_timeout", "5")
        params.setdefault("keepalives_idle", "10")
        params.setdefault("keepalives_interval", "5")
        params.setdefault("keepalives_count", "3")
        return ReconnectingPostgresqlDatabase(
            parsed.path.lstrip("/") or "postgres",
            user=unquote(parsed.username) if parsed.username else None,
            password=unquote(parsed.password) if parsed.password else None,
            host=parsed.hostname or None,
            port=parsed.port or None,
            max_connections=max_connections,
            stale_timeout=300,
            timeout=30,
            prefer_psycopg3=True,
            **params,
        )
    raise ValueError(f"database url {url!r}: scheme must be sqlite:/// or postgresql://")


def open_database(
    url: str, max_connections: int = 20, reconnect_wait: float = 0.0
) -> peewee.Database:
    """Create the database for `url`, bind the models to it and apply migrations."""
    db = make_database(url, max_connections)
    if isinstance(db, ReconnectingPostgresqlDatabase):
        db.reconnect_wait = reconnect_wait
    database_proxy.initialize(db)
    apply_migrations(db)
    return db


class ConnectionLost(peewee.OperationalError):
    """The connection died inside a transaction before COMMIT was sent: nothing of the
    transaction was written, so running it again is safe."""


class CommitOutcomeUnknown(peewee.OperationalError):
    """The connection died while COMMIT was on its way: the transaction may or may not
    have been written, so it must not be run again blindly."""


_thread_policy = threading.local()
#: How a worker's non-durable transaction begins (PostgreSQL; see `asynchronous_commit`).
ASYNC_BEGIN = "BEGIN; SET LOCAL synchronous_commit TO OFF"


def asynchronous_commit(on: bool) -> None:
    """PostgreSQL: this thread's next transactions begin with `synchronous_commit`
    off, in the BEGIN's own round trip (quaero.store's non-durable transactions)."""
    _thread_policy.asynchronous_commit = on


def fail_fast() -> None:
    """Make this thread's database calls fail at once while the database is away,
    instead of waiting `reconnect_wait` for it (web request threads: they answer 503)."""
    _thread_policy.fail_fast = True


class ReconnectingPostgresqlDatabase(PooledPostgresqlDatabase):
    """peewee's pool plus recovery from connections that died under it.

    Each thread keeps the connection it checked out, so a terminated backend or a
    restarted server would otherwise fail every later query of that thread with "the
    connection is closed". Here an error on a connection that turns out to be dead
    drops it from the pool (checkout already discards dead idle ones), and:

    - outside a transaction the statement (a read, or one of the few idempotent
      autocommit writes) runs once more on a fresh connection;
    - inside one, `ConnectionLost` is raised and the caller runs the whole transaction
      again (JobManager.transaction does); a connection lost at COMMIT raises
      `CommitOutcomeUnknown`, which is not retried.

    While the server is unreachable, connecting is retried with back-off for up to
    `reconnect_wait` seconds (workers ride through a restart), except in threads that
    called `fail_fast()` (web requests answer 503 at once).
    """

    reconnect_wait = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # this database's own per-thread transaction state (see `_begin`): a BEGIN
        # pending here is never sent on another database's connection by that thread
        self._txn = threading.local()

    def connect(self, reuse_if_open: bool = False) -> bool:
        wait = 0.0 if getattr(_thread_policy, "fail_fast", False) else self.reconnect_wait
        started = time.monotonic()
        pause = 0.1
        while True:
            try:
                opened = super().connect(reuse_if_open)
            except peewee.OperationalError as exc:
                if not self.is_closed() or time.monotonic() + pause > started + wait:
                    raise
                if pause == 0.1:  # once per wait: the driver's messages span several lines
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    logger.warning("database unreachable, retrying for %gs: %s", wait, reason)
                time.sleep(pause)
                pause = min(2.0, pause * 2)
            else:
                if pause > 0.1:
                    logger.info("database reachable again after %.1fs", time.monotonic() - started)
                return opened

    def _drop_dead_connection(self) -> bool:
        """If this thread's connection is dead, remove it from the pool and forget it
        (keeping the transaction stack, so the transaction unwinds normally)."""
        conn = self._state.conn
        if conn is None or not (
            conn.closed or self._adapter.txn_status(conn) == self._adapter.txn_unknown
        ):
            return False
        with self._lock:
            self._close(conn, close_conn=True)
            self._state.conn, self._state.closed = None, True
        logger.warning("database connection lost; it is replaced on next use")
        return True

    def _lost(self) -> ConnectionLost:
        return ConnectionLost("database connection lost before commit; the transaction is void")

    def execute_sql(self, sql, params=None):
        self._send_begin()
        if self._state.closed and self.in_transaction():
            raise self._lost()  # never carry on a transaction on a new connection
        try:
            return super().execute_sql(sql, params)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if not self._drop_dead_connection():
                raise
            if self.in_transaction():
                raise self._lost() from exc
            return super().execute_sql(sql, params)

    def begin(self, *args, **kwargs) -> None:
        try:
            return self._begin(*args, **kwargs)
        except (peewee.OperationalError, peewee.InterfaceError):
            if not self._drop_dead_connection():
                raise
            return self._begin(*args, **kwargs)  # nothing was started: a fresh one

    def _begin(self, *args, **kwargs) -> None:
        if not getattr(_thread_policy, "asynchronous_commit", False):
            return super().begin(*args, **kwargs)
        # sent with the transaction's first statement (`_send_begin`): a worker's
        # transaction then costs no round trip of its own to start. The connection is
        # opened now, before peewee records the transaction (opening one resets it).
        if self.is_closed():
            self.connect()
        self._txn.begin_pending = True
        return None

    def _send_begin(self, first: str = "") -> bool:
        """Send this thread's pending BEGIN (see `_begin`), with `first` (a statement
        without parameters) in the same message; False when none was pending."""
        if not getattr(self._txn, "begin_pending", False):
            return False
        self._txn.begin_pending = False
        sql = ASYNC_BEGIN + (f"; {first}" if first else "")
        try:  # no parameters: the simple query protocol, several statements a message
            with peewee.__exception_wrapper__:
                self.cursor().execute(sql)
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if not self._drop_dead_connection():
                raise
            raise self._lost() from exc  # nothing was started: the caller runs it again
        return True

    def execute_first(self, sql: str) -> None:
        """Run `sql` (no parameters), in the same message as the transaction's BEGIN
        when that is still to be sent."""
        if not self._send_begin(sql):
            self.execute_sql(sql)

    def execute_and_commit(
        self, statements: list[tuple[str, Any]]
    ) -> tuple[list[str], list[tuple]]:
        """Run the transaction's last statements, (sql, parameters) pairs, and its
        COMMIT in one round trip (a psycopg pipeline), so the rows they lock are held
        for no client round trip; returns the first one's column names and rows. Each
        is a prepared statement once run a few times on a connection, so the server no
        longer parses and plans it each time. The enclosing atomic block's own COMMIT
        is then skipped (see `commit`)."""
        self._send_begin()
        if self._state.closed:
            raise self._lost()
        try:
            with peewee.__exception_wrapper__:
                conn = self.connection()
                cursors = [conn.cursor() for _ in statements]
                with conn.pipeline():
                    for cursor, (sql, params) in zip(cursors, statements, strict=True):
                        cursor.execute(sql, params)
                    conn.execute("COMMIT")
                description = cursors[0].description  # psycopg builds it anew on each read
                names = [d[0] for d in description or ()]
                rows = cursors[0].fetchall() if description else []
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if not self._drop_dead_connection():
                raise  # a statement failed: nothing committed, the block rolls back
            raise CommitOutcomeUnknown(
                "database connection lost during COMMIT; the transaction may have been written"
            ) from exc
        self._txn.committed = True
        return names, rows

    def commit(self) -> None:
        if getattr(self._txn, "begin_pending", False):
            self._txn.begin_pending = False  # nothing was sent: nothing to commit
            return None
        if getattr(self._txn, "committed", False):
            self._txn.committed = False  # execute_and_commit sent it
            return None
        if self._state.closed:
            raise self._lost()
        try:
            return super().commit()
        except (peewee.OperationalError, peewee.InterfaceError) as exc:
            if not self._drop_dead_connection():
                raise
            raise CommitOutcomeUnknown(
                "database connection lost during COMMIT; the transaction may have been written"
            ) from exc

    def rollback(self) -> None:
        if getattr(self._txn, "begin_pending", False):
            self._txn.begin_pending = False  # nothing was sent: nothing to undo
            return None
        if getattr(self._txn, "committed", False):
            self._txn.committed = False  # committed already: nothing to roll back
            return None
        if self._state.closed:
            return None  # the server rolled the transaction back when the connection died
        try:
            return super().rollback()
        except (peewee.OperationalError, peewee.InterfaceError):
            if not self._drop_dead_connection():
                raise
            return None


def _statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside our literals)."""
    sql = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in sql.split(";") if s.strip()]


def pending_migrations(db: peewee.Database, folder: Path = MIGRATIONS_DIR) -> list[Path]:
    """Migration files not yet recorded in `schema_migrations`, in order."""
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
    )
    applied = {row[0] for row in db.execute_sql("SELECT name FROM schema_migrations")}
    return [p for p in sorted(folder.glob("*.sql")) if p.name not in applied]


def apply_migrations(db: peewee.Database, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations, each in its own transaction; returns their names.

    Safe when several processes start at once: PostgreSQL takes an advisory lock and
    SQLite's BEGIN IMMEDIATE serialises them; each re-checks what was applied.
    """
    done: list[str] = []
    pk = PRIMARY_KEYS[dialect(db)]
    for path in pending_migrations(db, folder):
        with db.atomic():
            if dialect(db) == "postgresql":
                db.execute_sql("SELECT pg_advisory_xact_lock(728364)")
            cursor = db.execute_sql(
                f"SELECT 1 FROM schema_migrations WHERE name = {db.param}", (path.name,)
            )
            if cursor.fetchone():
                continue
            for statement in _statements(path.read_text().replace("{{pk}}", pk)):
                db.execute_sql(statement)
            db.execute_sql(
                f"INSERT INTO schema_migrations (name, applied_at) VALUES ({db.param}, {db.param})",
                (path.name, time.time()),
            )
        logger.info("applied migration %s", path.name)
        done.append(path.name)
    return done
