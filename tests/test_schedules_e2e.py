"""A schedule firing every second in three worker processes (PostgreSQL + Redis):
exactly one root per tick over 20 ticks, and the tick jitter measured."""

import statistics

import psycopg
import pytest
import requests

from tests.helpers import scale_out_backend, wait_for
from tests.procs import RunPy, free_port, scale_out_config

pytestmark = [pytest.mark.e2e, pytest.mark.long]

TICKS = 20


def test_three_workers_create_exactly_one_root_per_tick(tmp_path):
    started: list[RunPy] = []
    with scale_out_backend() as backend:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        db_url = backend["database"]["url"]
        config = scale_out_config(
            tmp_path,
            port,
            backend,
            '[[schedules]]\nname = "every-second"\nevery = "1s"\ntype = "noop"\n'
            'payload = {note = "scheduled"}\n',
        )
        try:
            web = RunPy("web", config).start()
            started.append(web)
            web.wait_healthy(base)
            started += [RunPy("worker", config).start() for _ in range(3)]
            stats = f"{base}/api/stats"
            wait_for(lambda: requests.get(stats, timeout=5).json()["workers_alive"] == 3, 30)

            def ticks():
                with psycopg.connect(db_url) as db:
                    return db.execute(
                        "SELECT tick, root_id, created_at FROM schedule_ticks ORDER BY tick"
                    ).fetchall()

            wait_for(lambda: len(ticks()) >= TICKS, timeout=TICKS + 30, interval=0.5)
            listed = requests.get(f"{base}/api/schedules", timeout=5).json()
            for p in started:  # stopped, so that no root is created after the reads
                p.stop()
            rows = ticks()
            with psycopg.connect(db_url) as db:
                roots = db.execute(
                    "SELECT id FROM jobs WHERE parent_id IS NULL AND name = 'every-second'"
                ).fetchall()
        finally:
            for p in started:
                p.stop()
    assert len(rows) >= TICKS
    tick_times = [tick for tick, _, _ in rows]
    assert [b - a for a, b in zip(tick_times, tick_times[1:], strict=False)] == [1.0] * (
        len(rows) - 1
    )  # no tick skipped
    # exactly one root per tick: as many roots as ticks, each recorded against its tick
    assert sorted(root_id for (root_id,) in roots) == sorted(root_id for _, root_id, _ in rows)
    jitter = sorted(created - tick for tick, _, created in rows)
    median = statistics.median(jitter)
    p95 = jitter[round(0.95 * (len(jitter) - 1))]
    print(
        f"\nschedule tick jitter over {len(rows)} ticks, 3 workers: median "
        f"{median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {jitter[-1] * 1000:.0f} ms"
    )
    assert jitter[0] >= 0 and p95 < 1.0
    (schedule,) = listed["schedules"]
    assert schedule["name"] == "every-second" and schedule["cron"] == "@every 1s"
    assert schedule["type"] == "noop" and schedule["last_root_id"] in {r for (r,) in roots}
    assert schedule["next_run_at"].endswith("Z")
