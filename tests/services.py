"""A test's own PostgreSQL and Redis servers: started on free 127.0.0.1 ports in a
temporary folder, stopped (by pg_ctl / PID) at teardown, free to stop, kill and restart.

They never touch the machine's shared servers on 5432/6379, so fault tests (backends
terminated, a crash and restart, Redis away) can do what they like to them. Missing
binaries skip the test with the reason, except under CI=true, where they fail it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.helpers import unavailable
from tests.procs import free_port

PG_USER = "postgres"  # initdb refuses to run as root; tests run as root in CI


def _find(binary: str) -> str | None:
    """A PostgreSQL binary from PATH, /usr/local/bin or /usr/lib/postgresql/*/bin."""
    found = shutil.which(binary) or shutil.which(binary, path="/usr/local/bin")
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{binary}"), reverse=True)
    return versions[0] if versions else None


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command as the `postgres` user when we are root (initdb refuses root)."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", PG_USER, "--", *args]
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


class OwnPostgres:
    """A throwaway PostgreSQL cluster: `start()`, `stop(mode)`, `terminate_backends()`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.socket_dir = folder / "sock"
        self.logfile = folder / "postgres.log"
        self.port = free_port()
        self.initdb, self.pg_ctl = _find("initdb"), _find("pg_ctl")
        self.url = f"postgresql://{PG_USER}@127.0.0.1:{self.port}/quaero"

    def init(self) -> OwnPostgres:
        """initdb into the temp folder and create the `quaero` database."""
        if not (self.initdb and self.pg_ctl):
            unavailable("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
        if os.geteuid() == 0:
            try:
                import pwd

                pwd.getpwnam(PG_USER)
            except KeyError:
                unavailable(f"running as root and there is no {PG_USER!r} user for initdb")
        self.socket_dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, PG_USER)
            shutil.chown(self.socket_dir, PG_USER)
        done = _as_postgres(
            [self.initdb, "-D", str(self.data), "-U", PG_USER, "--auth=trust", "-E", "UTF8"],
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        self.start()
        import psycopg

        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE quaero")
        return self

    def admin_url(self, dbname: str = "quaero") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        """Start (or start again) and wait until it accepts connections."""
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.socket_dir} -c max_connections=200 "
            "-c fsync=off -c full_page_writes=off"
        )
        done = _as_postgres(
            [self.pg_ctl, "-D", str(self.data), "-l", str(self.logfile), "-o", options]
            + ["-w", "-t", "60", "start"],
            timeout=90,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate`; immediate is a crash (recovery at next start)."""
        _as_postgres([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"], timeout=60)

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def terminate_backends(self, dbname: str = "quaero") -> int:
        """pg_terminate_backend on every other connection to `dbname`; returns how many."""
        import psycopg

        with psycopg.connect(self.admin_url("postgres"), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND datname = %s",
                (dbname,),
            ).fetchall()
        return sum(1 for (ok,) in rows if ok)

    def log(self) -> str:
        try:
            return self.logfile.read_text()[-4000:]
        except OSError:
            return ""

    def destroy(self) -> None:
        """Stop for good: pg_ctl, then SIGKILL by PID if it is still there."""
        self.stop("immediate")
        pid = self.pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class OwnRedis:
    """A throwaway `redis-server` without persistence: `start()`, `kill()`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> OwnRedis:
        """Start on the same port (again, after a kill) and wait for PING."""
        if not self.binary:
            unavailable("redis-server not found (apt-get install redis-server)")
        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL by PID: the queue's contents are gone with it (no persistence)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    """A fresh PostgreSQL cluster of this test's own; destroyed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="quaero-pg-"))
    server = OwnPostgres(folder)
    try:
        yield server.init()
    finally:
        server.destroy()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    """A fresh redis-server of this test's own; killed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="quaero-redis-"))
    server = OwnRedis(folder)
    try:
        yield server.start()
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
