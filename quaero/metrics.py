"""/metrics: Prometheus text exposition by `prometheus_client`, from the metadata store.

Counters and the duration histogram come from `job_totals` (quaero/totals.py), which the
JobManager adds to in the transaction that finishes jobs. So they count finishes in
every worker process of every machine, survive restarts and never go down when jobs are
deleted; a web process needs no shared directory (PROMETHEUS_MULTIPROC_DIR) and no
in-memory state to report them. The gauges are read at scrape time: jobs stored by type
and status, the queue's depth and schedule, live workers and their worker threads.
Each scrape is a handful of small queries (an index scan for the stored jobs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from quaero import queries, totals
from quaero.models import STATUSES, Job
from quaero.queue import JobQueue

#: The text format version 0.0.4 that Prometheus scrapes by default.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class QuaeroCollector:
    """A custom collector: every value comes from the metadata store or the queue."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue

    def collect(self) -> Iterator[Metric]:
        """The metric families of one scrape."""
        stored = GaugeMetricFamily(
            "quaero_jobs", "Jobs stored, by type and status.", labels=["type", "status"]
        )
        counts = {(type_, status): n for type_, status, n in queries.counts_by_type()}
        for type_ in sorted({type_ for type_, _ in counts}):  # every status: no series vanishes
            for status in STATUSES:
                stored.add_metric([type_, status], counts.get((type_, status), 0))
        yield stored
        yield from self._finished()
        yield GaugeMetricFamily(
            "quaero_queue_depth", "Messages waiting on the Huey queue.", self.queue.depth()
        )
        yield GaugeMetricFamily(
            "quaero_queue_scheduled",
            "Messages waiting for their time (retry back-off).",
            self.queue.scheduled(),
        )
        workers = queries.live_workers()
        yield GaugeMetricFamily(
            "quaero_workers_alive", "Worker processes with a recent heartbeat.", len(workers)
        )
        yield GaugeMetricFamily(
            "quaero_worker_threads",
            "Workers (threads or processes) of the live worker processes.",
            sum(int(w.get("threads", 0)) for w in workers),
        )

    def _finished(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(
            "quaero_jobs_finished",
            "Jobs that finished, by type and final status (each retry's finish counts).",
            labels=["type", "status"],
        )
        by_status: dict[tuple[str, str], int] = defaultdict(int)
        buckets: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        seconds: dict[str, float] = defaultdict(float)
        for type_, status, bucket, jobs, secs in totals.read_totals(Job._meta.database):
            by_status[(type_, status)] += jobs
            if bucket != totals.NEVER_RAN:
                buckets[type_][bucket] += jobs
                seconds[type_] += secs
        for (type_, status), jobs in sorted(by_status.items()):
            counter.add_metric([type_, status], jobs)
        yield counter
        histogram = HistogramMetricFamily(
            "quaero_job_duration_seconds",
            "Run time of finished jobs, started to finished (a parent's includes its children's).",
            labels=["type"],
        )
        bounds = [repr(b) for b in totals.BUCKETS] + [totals.INF]
        for type_, counts in sorted(buckets.items()):
            cumulative, running = [], 0
            for bound in bounds:
                running += counts.get(bound, 0)
                cumulative.append((bound, running))
            histogram.add_metric([type_], cumulative, sum_value=seconds[type_])
        yield histogram


def render_metrics(queue: JobQueue) -> bytes:
    """The /metrics body (text format 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QuaeroCollector(queue))
    return generate_latest(registry)
