"""The figures the issue asks for, their targets, the run sizes, and a run's context."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Processes


@dataclass(frozen=True)
class FigureSpec:
    """One reported number: what it is, its unit and (for targets) the bound it must meet."""

    id: str
    name: str
    unit: str
    op: str | None = None  # ">=", "<=", "==" or None for a figure reported for context
    threshold: Any = None

    @property
    def benchmark(self) -> str:
        """The benchmark of a figure: "P1" for "P1.ratio"."""
        return self.id.split(".", 1)[0]

    @property
    def target(self) -> str:
        """The target as the table prints it."""
        if self.op is None:
            return "—"
        if self.op == "==":
            return "yes" if self.threshold is True else str(self.threshold)
        return f"{'≥' if self.op == '>=' else '≤'} {self.threshold:g}{self.unit_suffix}"

    @property
    def unit_suffix(self) -> str:
        return {"ms": " ms", "%": " %", "MB": " MB", "×": "×", "s": " s"}.get(self.unit, "")

    def passed(self, value: Any) -> bool | None:
        """True/False against the target; None for context figures and missing values."""
        if self.op is None or value is None:
            return None
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<=":
            return value <= self.threshold
        return value == self.threshold


SPECS: list[FigureSpec] = [
    FigureSpec("P1.quaero_rate", "quaero fan-out, children/s (submit → root finished)", "/s"),
    FigureSpec("P1.huey_rate", "raw SqliteHuey, no-op tasks/s (first enqueue → last done)", "/s"),
    FigureSpec("P1.ratio", "quaero / raw Huey", "×", ">=", 0.9),  # issue 17 (was 0.7)
    FigureSpec("P2.p50_ms", "POST /api/jobs → started_at, p50", "ms", "<=", 15),
    FigureSpec("P2.p95_ms", "POST /api/jobs → started_at, p95", "ms", "<=", 30),
    FigureSpec("P2.idle_cpu_pct", "idle `serve` CPU, % of one core", "%", "<=", 2),
    FigureSpec("P3.roots_p50_ms", "GET /api/jobs (roots, 50), p50", "ms"),
    FigureSpec("P3.roots_p95_ms", "GET /api/jobs (roots, 50), p95", "ms", "<=", 25),
    FigureSpec("P3.children_p50_ms", "GET /api/jobs/<id>/children (50), p50", "ms"),
    FigureSpec("P3.children_p95_ms", "GET /api/jobs/<id>/children (50), p95", "ms", "<=", 25),
    FigureSpec("P3.logs_p50_ms", "GET /api/jobs/<id>/logs (tail 200), p50", "ms"),
    FigureSpec("P3.logs_p95_ms", "GET /api/jobs/<id>/logs (tail 200), p95", "ms", "<=", 25),
    FigureSpec("P4.quaero_rate", "quaero crawl, pages/s", "/s"),
    FigureSpec("P4.wget_rate", "wget -r, pages/s", "/s"),
    FigureSpec("P4.ratio", "quaero / wget", "×", ">=", 4.5),  # issue 17 (was 4)
    FigureSpec("P4.same_pages", "same page set as wget", "", "==", True),
    FigureSpec("P5.peak_rss_mb", "peak RSS of `run.py serve` during P1", "MB", "<=", 150),
    FigureSpec("P6.rate_1", "Redis+PostgreSQL, 1 worker × 5 threads, jobs/s", "/s"),
    FigureSpec("P6.rate_4", "Redis+PostgreSQL, 4 workers × 5 threads, jobs/s", "/s"),
    FigureSpec("P6.speedup", "4 workers / 1 worker", "×", ">=", 3.7),  # issue 17 (was 3.5)
    FigureSpec("P7.rq_rate", "RQ, 4 SimpleWorkers, no-op jobs/s (enqueue → all done)", "/s"),
    FigureSpec("P7.ratio", "quaero (P1) / RQ", "×", ">=", 2.5),
    FigureSpec("P11.quaero_rate", "link-heavy site, quaero crawl, no delay, pages/s", "/s"),
    FigureSpec("P11.scrapy_rate", "link-heavy site, Scrapy, no delay, pages/s", "/s"),
    FigureSpec("P11.scrapy_ratio", "quaero / Scrapy, no delay", "×", ">=", 1.0),
    FigureSpec("P11.quaero_delay_rate", "link-heavy site, quaero, 50 ms a response, pages/s", "/s"),
    FigureSpec("P11.wget_delay_rate", "link-heavy site, wget -r, 50 ms a response, pages/s", "/s"),
    FigureSpec("P11.wget_ratio", "quaero / wget, 50 ms a response", "×", ">=", 3.0),
    FigureSpec("P11.same_pages", "same page set (quaero, Scrapy, wget, graph)", "", "==", True),
    FigureSpec("P8.recovery_s", "recovery after SIGKILL of a worker, median of 3", "s", "<=", 10),
    FigureSpec("P9.rate_1", "one tree of no-op children, 1 worker × 5 threads, jobs/s", "/s"),
    FigureSpec("P9.rate_4", "one tree of no-op children, 4 workers × 5 threads, jobs/s", "/s"),
    FigureSpec("P9.speedup", "one tree: 4 workers / 1 worker", "×", ">=", 3),
    FigureSpec("P10.stats_p50_ms", "1M jobs: GET /api/stats, p50", "ms"),
    FigureSpec("P10.stats_p95_ms", "1M jobs: GET /api/stats, p95", "ms", "<=", 25),
    FigureSpec("P10.page_p50_ms", "1M jobs: GET /jobs (the page), p50", "ms"),
    FigureSpec("P10.page_p95_ms", "1M jobs: GET /jobs (the page), p95", "ms", "<=", 25),
    FigureSpec("P10.metrics_p50_ms", "1M jobs: GET /metrics, p50", "ms"),
    FigureSpec("P10.metrics_p95_ms", "1M jobs: GET /metrics, p95", "ms", "<=", 25),
    FigureSpec("P10.sweep_ms", "orphan sweep with 1M messages queued, median", "ms"),
    FigureSpec("P10.sweep_ratio", "orphan sweep, 1M / 10 messages queued", "×", "<=", 2),
    FigureSpec("P10.reaper_ms", "reaper round with 1M messages queued, median", "ms"),
    FigureSpec("P10.reaper_ratio", "reaper round, 1M / 10 messages queued", "×", "<=", 2),
    *[
        spec
        for store, label in (("sqlite", "SQLite"), ("postgresql", "PostgreSQL"))
        for spec in (
            FigureSpec(
                f"P12.{store}_descendants_p95_ms",
                f"{label}: GET /api/jobs/<id>/descendants (50) of 100k, p95",
                "ms",
                "<=",
                50,
            ),
            FigureSpec(
                f"P12.{store}_failures_p95_ms",
                f"{label}: GET …/failures (10k failed, 5 causes), p95",
                "ms",
                "<=",
                50,
            ),
            FigureSpec(
                f"P12.{store}_logs_p95_ms",
                f"{label}: GET …/logs?tree=1 (tail 200), p95",
                "ms",
                "<=",
                50,
            ),
            FigureSpec(f"P12.{store}_export_rate", f"{label}: export, rows/s", "/s", ">=", 20_000),
            FigureSpec(
                f"P12.{store}_export_rss_mb",
                f"{label}: export, server RSS growth",
                "MB",
                "<=",
                50,
            ),
            FigureSpec(
                f"P12.{store}_dialog_ms",
                f"{label}: Chromium, dialog → failure groups shown, max of 5",
                "ms",
                "<=",
                500,
            ),
        )
    ],
]
SPEC_BY_ID = {spec.id: spec for spec in SPECS}
BENCHMARKS = sorted({spec.benchmark for spec in SPECS})

# Sizes of the full run (the issue's) and of the smoke run (seconds per benchmark).
FULL_SIZES: dict[str, Any] = {
    "p1_children": 10_000,
    "p1_workers": 4,
    "p1_reps": 3,
    "p1_huey_enqueue": "bulk",  # "bulk": 1,000 per transaction, like quaero; "each"
    "p2_jobs": 200,
    "p2_spacing": 0.05,
    "p2_idle_seconds": 10.0,
    "p3_roots": 10_000,
    "p3_children_per_root": 99,
    "p3_logs": 2_000_000,
    "p3_heavy_logs": 2_000,
    "p3_requests": 200,
    "p3_cache": True,
    "p4_branching": 23,
    "p4_delay": 0.05,
    "p4_workers": 5,
    "p4_depth": 2,
    "p11_sections": 22,  # 22 sections x 22 pages: 512 pages within depth 2
    "p11_delay": 0.05,
    "p11_workers": 5,
    "p11_depth": 2,
    "p11_reps": 2,
    "p6_jobs": 1_000,
    "p6_sleep": 0.05,
    "p6_threads": 5,
    "p6_procs": 4,
    "p9_children": 10_000,
    "p7_jobs": 10_000,
    "p7_workers": 4,
    "p7_reps": 3,
    "p8_reps": 3,
    "p8_jobs": 2,
    "p8_job_seconds": 60.0,
    "p10_requests": 200,
    "p10_jobs": 10_000,
    "p10_queued": 1_000_000,
    "p10_rounds": 21,
    "p12_descendants": 100_000,
    "p12_failed": 10_000,
    "p12_requests": 100,
    "redis_url": "redis://127.0.0.1:6379",
    "p6_redis_db": 14,
    "p7_redis_db": 15,
    "postgres_url": "postgresql://127.0.0.1:5432/test",
}
SMOKE_SIZES: dict[str, Any] = {
    **FULL_SIZES,
    "p1_children": 300,
    "p1_reps": 1,
    "p2_jobs": 20,
    "p2_idle_seconds": 2.0,
    "p3_roots": 50,
    "p3_children_per_root": 19,
    "p3_logs": 2_000,
    "p3_heavy_logs": 300,
    "p3_requests": 20,
    "p3_cache": False,
    "p4_branching": 4,
    "p4_delay": 0.01,
    "p11_sections": 4,
    "p11_delay": 0.01,
    "p11_reps": 1,
    "p6_jobs": 40,
    "p9_children": 300,
    "p7_jobs": 300,
    "p7_reps": 1,
    "p8_reps": 1,
    "p10_requests": 20,
    "p10_jobs": 500,
    "p10_queued": 20_000,
    "p10_rounds": 5,
    "p12_descendants": 3_000,
    "p12_failed": 300,
    "p12_requests": 10,
}


@dataclass
class Figure:
    """A measured (or failed) figure."""

    spec: FigureSpec
    value: Any = None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        value = self.value
        if isinstance(value, float) and math.isnan(value):
            value = None
        return {
            "benchmark": self.spec.benchmark,
            "name": self.spec.name,
            "value": value,
            "unit": self.spec.unit,
            "target": self.spec.target if self.spec.op else None,
            "op": self.spec.op,
            "threshold": self.spec.threshold,
            "passed": self.spec.passed(value) if self.error is None else False,
            "error": self.error,
        }


@dataclass
class Context:
    """One harness run: sizes, child processes, a scratch folder, figures and details."""

    sizes: dict[str, Any]
    smoke: bool = False
    procs: Processes = field(default_factory=Processes)
    figures: dict[str, Figure] = field(default_factory=dict)
    details: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    _scratch: tempfile.TemporaryDirectory | None = None

    def __post_init__(self) -> None:
        self.figures = {spec.id: Figure(spec) for spec in SPECS}

    @property
    def scratch(self) -> Path:
        """A temporary folder for this run's configs, databases and logs."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="quaero-bench-")
        return Path(self._scratch.name)

    def folder(self, name: str) -> Path:
        """A fresh sub-folder of the scratch folder."""
        path = self.scratch / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    def record(self, figure_id: str, value: Any) -> None:
        """Set a figure's value."""
        self.figures[figure_id].value = value

    def fail(self, figure_id: str, reason: str) -> None:
        """Mark a figure as not measured, with the reason."""
        figure = self.figures[figure_id]
        if figure.value is None and figure.error is None:
            figure.error = f"ERROR: {reason}"

    def detail(self, benchmark: str, **values: Any) -> None:
        """Add raw numbers to a benchmark's details in the JSON file."""
        self.details.setdefault(benchmark, {}).update(values)

    def close(self) -> None:
        """Stop every child process and remove the scratch folder."""
        try:
            self.procs.stop_all()
        finally:
            if self._scratch is not None:
                self._scratch.cleanup()
