"""Wiring: the database, the queue, the job manager and recovery built from one Config."""

from __future__ import annotations

from dataclasses import dataclass

import peewee

import quaero.executors  # noqa: F401  (registers the executor types)
from quaero.config import Config
from quaero.db import open_database
from quaero.jobs import JobManager
from quaero.plugins import load_executor_modules
from quaero.queue import JobQueue
from quaero.recovery import Recovery
from quaero.schedules import check_schedules
from quaero.store import Store


@dataclass
class Services:
    """What the web app and the workers share in one process."""

    config: Config
    db: peewee.Database
    queue: JobQueue
    store: Store
    manager: JobManager
    recovery: Recovery

    def close(self) -> None:
        """Close database and queue connections."""
        self.queue.close()
        close_all = getattr(self.db, "close_all", None)
        if close_all:
            close_all()
        elif not self.db.is_closed():
            self.db.close()


def build_services(config: Config) -> Services:
    """Load the user's executor modules, then open the metadata database (applying
    migrations) and the queue."""
    load_executor_modules(config.executors.modules)
    check_schedules(config)
    db = open_database(
        config.database_url, config.database.max_connections, config.database.reconnect_wait
    )
    queue = JobQueue(config)
    store = Store(db, queue, config)
    manager = JobManager(store)
    return Services(
        config=config,
        db=db,
        queue=queue,
        store=store,
        manager=manager,
        recovery=Recovery(manager),
    )
