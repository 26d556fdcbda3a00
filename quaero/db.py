"""The metadata database: connection from a URL, SQLite pragmas, and migrations.

Models are bound to `database_proxy`; `open_database` creates the real database (SQLite
by default, PostgreSQL for scale-out) and points the proxy at it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

import peewee
from playhouse.pool import PooledPostgresqlDatabase

logger = logging.getLogger(__name__)

database_proxy = peewee.DatabaseProxy()

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "busy_timeout": 30_000,  # ms: writers queue up instead of failing
    "synchronous": "normal",  # safe with WAL; a power cut may lose the last commits only
    "cache_size": -8_000,  # KiB per connection: each web thread has one (issue 13: RSS)
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
        return PooledPostgresqlDatabase(
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


def open_database(url: str, max_connections: int = 20) -> peewee.Database:
    """Create the database for `url`, bind the models to it and apply migrations."""
    db = make_database(url, max_connections)
    database_proxy.initialize(db)
    apply_migrations(db)
    return db


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
