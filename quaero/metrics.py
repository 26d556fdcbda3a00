"""Prometheus text exposition of jobs, queue depth, workers and durations."""

from __future__ import annotations

import peewee

from quaero import queries
from quaero.models import Job
from quaero.queue import JobQueue


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(queue: JobQueue) -> str:
    """The /metrics body (text format 0.0.4)."""
    lines = [
        "# HELP quaero_jobs Jobs stored, by type and status.",
        "# TYPE quaero_jobs gauge",
    ]
    for type_, status, count in sorted(queries.counts_by_type()):
        lines.append(f'quaero_jobs{{type="{_label(type_)}",status="{status}"}} {count}')
    lines += [
        "# HELP quaero_queue_depth Messages waiting on the Huey queue.",
        "# TYPE quaero_queue_depth gauge",
        f"quaero_queue_depth {queue.depth()}",
        "# HELP quaero_queue_scheduled Messages waiting for their time (retry back-off).",
        "# TYPE quaero_queue_scheduled gauge",
        f"quaero_queue_scheduled {queue.scheduled()}",
        "# HELP quaero_workers_alive Worker processes with a recent heartbeat.",
        "# TYPE quaero_workers_alive gauge",
        f"quaero_workers_alive {len(queries.live_workers())}",
        "# HELP quaero_job_duration_seconds Run time of finished jobs (started to finished).",
        "# TYPE quaero_job_duration_seconds summary",
    ]
    durations = (
        Job.select(
            Job.type,
            peewee.fn.COUNT(Job.id),
            peewee.fn.SUM(Job.finished_at - Job.started_at),
        )
        .where(Job.finished_at.is_null(False), Job.started_at.is_null(False))
        .group_by(Job.type)
        .tuples()
    )
    for type_, count, total in sorted(durations):
        lines.append(f'quaero_job_duration_seconds_count{{type="{_label(type_)}"}} {count}')
        lines.append(f'quaero_job_duration_seconds_sum{{type="{_label(type_)}"}} {total or 0:.6f}')
    return "\n".join(lines) + "\n"
