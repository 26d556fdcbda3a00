"""Render docs/faults.md from the figures the fault tests wrote (tests/faults.py's
`record_figures`): `python -m tests.faults_report [FIGURES.json] [OUT.md]`.

Every fault scenario the suite runs is listed; one without figures in the file says so
(its test did not run, or does not record figures yet).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.faults import figures_path

ROOT = Path(__file__).resolve().parent.parent

#: Every fault scenario of the suite: key, test, what is done.
PARTITIONS = "test_faults_partitions.py"
SCENARIOS = [
    ("clock-skew", "test_faults_clock.py", "workers' clocks +60 s and -60 s"),
    ("partition-postgres-one-worker", PARTITIONS, "one worker cut from PostgreSQL"),
    ("partition-postgres-all-workers", PARTITIONS, "all workers cut from PostgreSQL"),
    ("partition-redis-blackhole-one-worker", PARTITIONS, "a worker black-holed from Redis"),
    ("partition-redis-all-workers", PARTITIONS, "all workers cut from Redis"),
    ("postgres-slow-500ms", PARTITIONS, "PostgreSQL +500 ms per round trip"),
    ("postgres-backends-terminated", "test_faults_postgres.py", "PostgreSQL backends terminated"),
    ("postgres-crash-restart", "test_faults_postgres.py", "PostgreSQL crash, back 5 s later"),
    ("redis-down", "test_faults_redis.py", "Redis killed, then started empty"),
    ("worker-sigstop", "test_faults_workers.py", "a worker stalled (SIGSTOP) past its lease"),
    ("worker-sigkill", "test_faults_workers.py", "a worker SIGKILLed"),
    ("serve-sigkill-fanout", "test_faults_workers.py", "`serve` SIGKILLed mid fan-out"),
    ("pause-kill-resume", "test_faults_workers.py", "pause, SIGKILL, restart, resume × 6"),
    ("retention-purge", "test_faults_workers.py", "1,000,000-row retention purge"),
    ("disk-full", "test_faults_disk.py", "SQLite on a full 20 MiB tmpfs"),
]  # fmt: skip
COLUMNS = [
    ("lost", "lost"),
    ("stuck", "stuck"),
    ("run_twice", "run twice"),
    ("in_flight_on_cut_worker", "in flight on the cut worker(s)"),
    ("recover_s", "recovered (s)"),
]
NOTES = {
    "recover_s": "recovered (s): from the fault's end (the heal, the restart) until the"
    " work was done (the crawl or the submissions finished); for a SIGKILL, from the kill"
    " until its jobs ran elsewhere",
    "healthy_after_s": "seconds from the database's return until /healthz answered 200",
    "taken_over_s": "seconds from the cut until the cut worker's jobs ran elsewhere",
    "noticed_after_s": "seconds until the black-holed worker reported its queue away",
    "retry_start_error_s": "largest gap between a retry's promised and real start",
    "measured_skew_s": "skews /api/stats showed",
}


def cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def render(figures: dict) -> str:
    lines = [
        "# Fault scenarios and their figures",
        "",
        "Every fault the test suite inflicts on quaero, with its figures from the last run",
        "(`make test-long` runs them, and CI: pytest marker `faults`). Each test drives real",
        "processes (`web`, `worker`, `serve`) on real stores, PostgreSQL and Redis being",
        "the test's own instances on free 127.0.0.1 ports, partitions made by a TCP proxy",
        "of the test's own (`tests/netproxy.py`), and counts jobs exactly: **lost** (a",
        "page or child that never got a job), **stuck** (not final at the end), **run",
        "twice** (a page fetched twice), against the jobs **in flight** on the worker(s)",
        "the fault hit (the guarantee: run twice ≤ in flight).",
        "",
        "Rendered by `python -m tests.faults_report` from the figures file the tests",
        "write (`$QUAERO_FAULT_FIGURES`, default `$TMPDIR/quaero-fault-figures.json`).",
        "",
        "| scenario | test | " + " | ".join(title for _, title in COLUMNS) + " | other |",
        "|---|---|" + "---|" * len(COLUMNS) + "---|",
    ]
    for key, test, short in SCENARIOS:
        found = figures.get(key)
        if found is None:
            row = [short, f"`{test}`", *["–"] * len(COLUMNS), "no figures recorded"]
        else:
            other = {
                k: v
                for k, v in found.items()
                if k not in dict(COLUMNS) and k not in ("fault", "at", "pages", "duplicated")
            }
            extra = "; ".join(f"{k} {cell(v)}" for k, v in sorted(other.items()))
            row = [found["fault"], f"`{test}`", *[cell(found.get(k)) for k, _ in COLUMNS], extra]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Columns and figures:", ""]
    lines += [f"- `{k}`: {text}" for k, text in NOTES.items()]
    lines += [
        "",
        "## Clocks",
        "",
        "Every time quaero writes to or compares with `jobs` and `workers` rows is read off",
        "the database's clock (`quaero/clock.py`): each process keeps its offset to",
        "PostgreSQL's `clock_timestamp()`, measured by the worker's heartbeat every beat",
        "from a round trip's midpoint, and heartbeats stamp leases with the server's clock",
        "as the statement runs. Huey's schedule (retry back-offs) uses the same clock.",
        "With SQLite every process is on one host, so the offset is 0.",
        "",
        "The clock test shifts a worker's clock with `QUAERO_CLOCK_SKEW_SECONDS` (a test",
        "seam, added to quaero's wall clock). libfaketime (`faketime -f +60s`, with",
        "`FAKETIME_DONT_FAKE_MONOTONIC=1`) was tried: `time.time()` is shifted and",
        "`threading.Event.wait` works, but `time.sleep` fails with `OSError: [Errno 22]",
        "Invalid argument`; Huey's scheduler and quaero's back-offs call `time.sleep`, so",
        "only a process that never sleeps (a one-shot script) can run under it.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else figures_path()
    target = Path(argv[2]) if len(argv) > 2 else ROOT / "docs" / "faults.md"
    figures = json.loads(source.read_text()) if source.exists() else {}
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(figures))
    print(f"{target}: {sum(1 for k, _, _ in SCENARIOS if k in figures)} scenarios with figures")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
