"""Cron schedules (`[[schedules]]`): a root job at every tick, exactly once across all
worker processes.

Every worker process runs a `Scheduler` in a thread of its own (beside its heartbeat and
maintenance threads). At each tick each of them tries to create the tick's root; the
root is inserted in the same transaction as a `schedule_ticks` row whose primary key is
(schedule, tick), so one process wins and the others' inserts undo themselves. A process
that starts after ticks were missed (everything was down) creates the latest missed tick
once, never one root per missed tick. Ticks come from croniter (`cron`, five fields, in
the schedule's time zone) or are multiples of `every` seconds since the epoch, so every
process computes the same tick times.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from typing import Any

from croniter import croniter

from quaero.config import Config, ConfigError, ScheduleConfig
from quaero.jobs import JobManager
from quaero.models import Job
from quaero.serialize import iso

logger = logging.getLogger(__name__)

#: Tick rows older than this are deleted by the process that records a newer tick.
KEEP_TICKS_SECONDS = 86_400.0
#: The scheduler thread looks at the clock at least this often (a changed clock, a stop).
MAX_WAIT = 1.0

RECORD_TICK = """
INSERT INTO schedule_ticks (schedule, tick, root_id, created_at)
SELECT CAST(:schedule AS TEXT), CAST(:tick AS DOUBLE PRECISION), CAST(:root_id AS BIGINT),
    CAST(:now AS DOUBLE PRECISION)
WHERE NOT EXISTS (SELECT 1 FROM schedule_ticks WHERE schedule = :schedule AND tick >= :tick)
ON CONFLICT DO NOTHING
RETURNING tick
"""
FORGET_OLD_TICKS = "DELETE FROM schedule_ticks WHERE schedule = :schedule AND tick < :cutoff"
LAST_TICKS = "SELECT schedule, MAX(tick) FROM schedule_ticks GROUP BY schedule"
LAST_ROOT = """
SELECT root_id FROM schedule_ticks WHERE schedule = :schedule ORDER BY tick DESC LIMIT 1
"""


class TickTaken(Exception):
    """Another process created this tick's root (or a later one): undo ours."""


def latest_tick(schedule: ScheduleConfig, at: float) -> float:
    """The schedule's last tick at or before `at` (epoch seconds)."""
    if schedule.every:
        return (at // schedule.every) * schedule.every
    start = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(schedule.timezone))
    return croniter(schedule.cron, start).get_prev(float)


def next_tick(schedule: ScheduleConfig, after: float) -> float:
    """The schedule's first tick after `after`."""
    if schedule.every:
        return (after // schedule.every + 1) * schedule.every
    start = dt.datetime.fromtimestamp(after, zoneinfo.ZoneInfo(schedule.timezone))
    return croniter(schedule.cron, start).get_next(float)


def check_schedules(config: Config) -> None:
    """Refuse (ConfigError naming the schedule) a type no process can run, or a payload
    its executor refuses; called once the executor modules are loaded."""
    from quaero.errors import ValidationFailed
    from quaero.validation import validate_create

    for i, schedule in enumerate(config.schedules):
        try:
            validate_create({"type": schedule.type, "payload": schedule.payload}, demo_types=True)
        except ValidationFailed as exc:
            details = "; ".join(f"{k}: {v}" for k, v in (exc.fields or {}).items()) or str(exc)
            raise ConfigError(f"schedules[{i}] ({schedule.name}): {details}") from None


def sql(manager: JobManager, statement: str) -> str:
    """A statement rendered for the store's driver."""
    return manager.store.sql(statement)


def schedules_to_dicts(manager: JobManager, now: float | None = None) -> list[dict[str, Any]]:
    """`GET /api/schedules`: each schedule with its next run and the last root it made."""
    now = manager.store.now() if now is None else now
    last_root = sql(manager, LAST_ROOT)
    listed = []
    for schedule in manager.config.schedules:
        row = manager.db.execute_sql(last_root, {"schedule": schedule.name}).fetchone()
        listed.append(
            {
                "name": schedule.name,
                "cron": schedule.expression,
                "type": schedule.type,
                "next_run_at": iso(next_tick(schedule, now)),
                "last_root_id": row[0] if row else None,
            }
        )
    return listed


class Scheduler:
    """Creates each schedule's roots in one worker process, racing the others through
    the `schedule_ticks` primary key."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.schedules = manager.config.schedules
        #: per schedule, the latest tick known to have a root (or to be skipped)
        self.done: dict[str, float] = {}
        self._record_sql = sql(manager, RECORD_TICK)
        self._forget_sql = sql(manager, FORGET_OLD_TICKS)

    def start(self, now: float | None = None) -> None:
        """Learn the last recorded tick of each schedule. A schedule that never ran
        starts at its next tick; one whose latest tick was missed runs it once now."""
        now = self.manager.store.now() if now is None else now
        recorded = dict(self.manager.db.execute_sql(LAST_TICKS).fetchall())
        for schedule in self.schedules:
            last = recorded.get(schedule.name)
            self.done[schedule.name] = latest_tick(schedule, now) if last is None else last

    def seconds_to_next(self, now: float | None = None) -> float:
        """How long the thread may wait before a tick is due (at most MAX_WAIT)."""
        now = self.manager.store.now() if now is None else now
        waits = [next_tick(s, self.done.get(s.name, now)) - now for s in self.schedules]
        return max(0.0, min([MAX_WAIT, *waits]))

    def run_due(self, now: float | None = None) -> list[int]:
        """Create the root of each schedule's latest tick not yet created; returns the
        ids of the roots this process created (the others' are not counted)."""
        now = self.manager.store.now() if now is None else now
        created = []
        for schedule in self.schedules:
            tick = latest_tick(schedule, now)
            if tick <= self.done.get(schedule.name, -1.0):
                continue
            root_id = self.fire(schedule, tick)
            self.done[schedule.name] = tick
            if root_id is not None:
                created.append(root_id)
        return created

    def fire(self, schedule: ScheduleConfig, tick: float) -> int | None:
        """Create the tick's root unless another process did; its id, or None."""

        def record(job: Job) -> None:
            now = self.manager.store.now()
            params = {"schedule": schedule.name, "tick": tick, "root_id": job.id, "now": now}
            if self.manager.db.execute_sql(self._record_sql, params).fetchone() is None:
                raise TickTaken(schedule.name)
            cutoff = {"schedule": schedule.name, "cutoff": tick - KEEP_TICKS_SECONDS}
            self.manager.db.execute_sql(self._forget_sql, cutoff)
            message = f"created by schedule {schedule.name} ({schedule.expression}) for {iso(tick)}"
            self.manager.store.write_log(job.id, "info", message, now)

        try:
            job = self.manager.create_root(
                schedule.type, dict(schedule.payload), name=schedule.name, in_transaction=record
            )
        except TickTaken:
            return None
        logger.info("schedule %s: root %s for tick %s", schedule.name, job.id, iso(tick))
        return job.id
