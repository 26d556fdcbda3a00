"""Worker faults with real processes on shared SQLite files: a stalled worker's stale
attempt cannot write, a SIGKILLed worker's jobs run elsewhere within seconds, and
re-running a parent after a crash, a pause cycle or a retry never duplicates children.
Each test counts lost, stuck and duplicated jobs exactly."""

import signal
import sqlite3
import time

import pytest
import requests

from tests.faults import record_figures
from tests.helpers import wait_for
from tests.procs import free_port, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def rows(tmp_path, sql, params=()):
    with sqlite3.connect(tmp_path / "data" / "quaero.db", timeout=30) as db:
        return db.execute(sql, params).fetchall()


def job(base, job_id):
    return requests.get(f"{base}/api/jobs/{job_id}", timeout=5).json()


def submit(base, type_, payload, **extra):
    answer = requests.post(
        f"{base}/api/jobs", json={"type": type_, "payload": payload, **extra}, timeout=5
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def holder_pid(tmp_path, job_id):
    """The pid of the worker process holding a running job (worker ids are host:pid:x)."""
    found = rows(
        tmp_path, "SELECT worker_id FROM jobs WHERE id = ? AND status = 'running'", [job_id]
    )
    return int(found[0][0].split(":")[1]) if found and found[0][0] else None


def finished(base, job_id):
    j = job(base, job_id)
    return j if j["status"] in ("completed", "failed", "cancelled") else None


def test_a_stalled_workers_stale_attempt_cannot_write(tmp_path, procs):
    """SIGSTOP 6 s with a 3 s lease: another worker takes the job over; after SIGCONT
    the old attempt's writes (log lines, progress) are refused and it stops."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[jobs]\nlease_seconds = 3\n[queue]\nnum_workers = 1")
    web = procs("web", config)
    web.wait_healthy(base)
    workers = {p.proc.pid: p for p in (procs("worker", config), procs("worker", config))}
    wait_for(lambda: rows(tmp_path, "SELECT COUNT(*) FROM workers")[0][0] == 2, timeout=30)
    job_id = submit(base, "sleep", {"seconds": 10, "steps": 20})
    wait_for(lambda: job(base, job_id)["progress"] > 0.1, timeout=20)
    stalled = holder_pid(tmp_path, job_id)
    assert stalled in workers
    workers[stalled].signal(signal.SIGSTOP)
    try:
        taken = wait_for(
            lambda: (p := holder_pid(tmp_path, job_id)) and p != stalled and p, timeout=20
        )
    finally:
        workers[stalled].signal(signal.SIGCONT)
    assert taken in workers
    done = wait_for(lambda: finished(base, job_id), timeout=30)
    assert done["status"] == "completed" and done["attempts"] == 2
    takeover = rows(tmp_path, "SELECT started_at FROM jobs WHERE id = ?", [job_id])[0][0]
    steps = [
        message
        for (message,) in rows(
            tmp_path,
            "SELECT message FROM job_logs WHERE job_id = ? AND created_at >= ? "
            "AND message LIKE 'step %' ORDER BY id",
            [job_id, takeover],
        )
    ]
    # only the live attempt wrote after the takeover: each step once, in order
    assert steps == [f"step {i}/20" for i in range(1, 21)]
    assert "no longer holds it" in workers[stalled].output() or "stopped" in (
        workers[stalled].output()
    )
    record_figures(
        "worker-sigstop",
        "a worker stalled (SIGSTOP 6 s, lease 3 s), then SIGCONT",
        lost=0,
        stuck=0,
        run_twice=1,
        in_flight_on_cut_worker=1,
        recover_s=None,
    )


def test_a_sigkilled_workers_jobs_run_elsewhere_within_10_seconds(tmp_path, procs):
    """Default lease (30 s): the dead worker is found from its silent heartbeat, not
    from its lease. The killed process is not reaped (a zombie still has its pid), so
    only the heartbeat can tell. The jobs then finish on the live worker, which is
    never robbed of them though they run longer than one heartbeat gap."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[jobs]\nlease_seconds = 30\n[queue]\nnum_workers = 2")
    web = procs("web", config)
    web.wait_healthy(base)
    doomed = procs("worker", config)
    ids = [submit(base, "sleep", {"seconds": 8, "steps": 8}) for _ in range(2)]
    wait_for(lambda: all(holder_pid(tmp_path, i) == doomed.proc.pid for i in ids), timeout=20)
    survivor = procs("worker", config)
    wait_for(lambda: rows(tmp_path, "SELECT COUNT(*) FROM workers")[0][0] == 2, timeout=30)
    doomed.signal(signal.SIGKILL)  # not waited for: its pid lives on as a zombie
    killed_at = time.time()

    def moved():
        return all(holder_pid(tmp_path, i) == survivor.proc.pid for i in ids)

    wait_for(moved, timeout=20, interval=0.1)
    recovery = time.time() - killed_at
    assert recovery < 10, f"recovered after {recovery:.1f}s"
    for i in ids:
        done = wait_for(lambda i=i: finished(base, i), timeout=30)
        assert done["status"] == "completed" and done["attempts"] == 2
    record_figures(
        "worker-sigkill",
        "a worker SIGKILLed with 2 jobs (lease 30 s, worker_timeout 6 s)",
        lost=0,
        stuck=0,
        run_twice=len(ids),
        in_flight_on_cut_worker=len(ids),
        recover_s=round(recovery, 1),
    )


def test_serve_killed_mid_fanout_creates_exactly_the_children(tmp_path, procs):
    """SIGKILL of `serve` while a 10,000-child fan-out spawns: after a restart the
    parent runs again and creates only the children that were missing."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 3")
    serve = procs("serve", config)
    serve.wait_healthy(base)
    root_id = submit(base, "fanout", {"children": 10_000, "batch": 10})
    wait_for(lambda: job(base, root_id)["counts"]["total"] >= 3000, timeout=60, interval=0.02)
    serve.signal(signal.SIGKILL)
    serve.wait(10)
    at_kill = rows(tmp_path, "SELECT COUNT(*) FROM jobs WHERE parent_id = ?", [root_id])[0][0]
    assert 3000 <= at_kill < 10_000, "the fan-out must be killed mid-way"
    restarted_at = time.monotonic()
    restarted = procs("serve", config)
    restarted.wait_healthy(base)
    root = wait_for(lambda: finished(base, root_id), timeout=120)
    assert root["status"] == "completed"
    assert root["counts"]["total"] == root["counts"]["completed"] == 10_000
    children, names = rows(
        tmp_path, "SELECT COUNT(*), COUNT(DISTINCT name) FROM jobs WHERE parent_id = ?", [root_id]
    )[0]
    assert children == names == 10_000
    record_figures(
        "serve-sigkill-fanout",
        "`serve` SIGKILLed while a 10,000-child fan-out spawns, then restarted",
        lost=0,
        stuck=0,
        duplicated_children=children - 10_000,
        children_at_kill=at_kill,
        recover_s=round(time.monotonic() - restarted_at, 1),
    )


def test_pause_kill_restart_resume_cycles_never_duplicate_children(tmp_path, procs):
    """pause → SIGKILL → restart → resume, over and over, while a parent spawns."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, port, "[queue]\nnum_workers = 2")
    serve = procs("serve", config)
    serve.wait_healthy(base)
    # each kill costs the running parent an attempt
    payload = {"children": 1500, "batch": 5}
    roots = [submit(base, "fanout", payload, max_attempts=10) for _ in range(3)]
    killed_mid_spawn = 0
    for _ in range(6):
        time.sleep(0.4)
        for root_id in roots:
            requests.post(f"{base}/api/jobs/{root_id}/pause", timeout=5)
        serve.signal(signal.SIGKILL)
        serve.wait(10)
        spawning = rows(
            tmp_path,
            "SELECT COUNT(*) FROM jobs WHERE parent_id IS NULL AND outcome IS NULL "
            "AND status IN ('pending', 'running')",
        )[0][0]
        killed_mid_spawn += spawning
        serve = procs("serve", config)
        serve.wait_healthy(base)
        for root_id in roots:
            requests.post(f"{base}/api/jobs/{root_id}/resume", timeout=5)
        if not spawning:
            break
    assert killed_mid_spawn >= 2, "the cycles must interrupt parents while they spawn"
    for root_id in roots:
        root = wait_for(lambda r=root_id: finished(base, r), timeout=120)
        assert root["status"] == "completed", root
        assert root["counts"]["total"] == root["counts"]["completed"] == 1500
    record_figures(
        "pause-kill-resume",
        "pause, SIGKILL, restart, resume, up to 6 times, 3 fan-outs of 1,500 spawning",
        lost=0,
        stuck=0,
        duplicated_children=0,
        parents_interrupted_mid_spawn=killed_mid_spawn,
    )


def test_a_large_retention_purge_takes_no_job_from_a_live_worker(tmp_path, procs):
    """1,000,000 expired jobs purged at start-up by worker A while it runs jobs with a
    3 s lease, worker B's reaper watching: the purge goes in short batches on its own
    thread, A's heartbeats go on, and no job runs twice."""
    from quaero import config as config_mod
    from quaero.services import build_services

    shared = (
        f'[database]\nurl = "sqlite:///{tmp_path}/quaero.db"\n'
        f'[queue]\npath = "{tmp_path}/queue.db"\n'
        "[jobs]\nlease_seconds = 3\nreaper_interval = 0.5\n"
    )
    folders = {name: tmp_path / name for name in ("a", "b")}
    for name, folder in folders.items():
        folder.mkdir()
        keep = "36500" if name == "b" else "30"  # only A purges
        workers = "4" if name == "a" else "1"
        write_config(
            folder,
            free_port(),
            shared + f"retention_days = {keep}\n[queue]\nnum_workers = {workers}",
        )
    services = build_services(config_mod.load(folders["a"] / "config.toml"))
    try:
        db = sqlite3.connect(tmp_path / "quaero.db", timeout=30)
        old = db.execute(
            "INSERT INTO jobs (root_id, path, depth, type, status, created_at, updated_at,"
            " finished_at) VALUES (0, '/', 0, 'fanout', 'completed', 0, 0, 1)"
        ).lastrowid
        db.execute("UPDATE jobs SET root_id = ? WHERE id = ?", (old, old))
        db.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)"
            " INSERT INTO jobs (root_id, parent_id, path, depth, type, status, created_at,"
            " updated_at, finished_at)"
            f" SELECT {old}, {old}, '/{old}/', 1, 'noop', 'completed', 0, 0, 1 FROM n"
        )
        db.execute(
            "INSERT INTO job_logs (job_id, level, message, created_at) "
            "SELECT id, 'info', 'done', 0 FROM jobs"
        )
        db.commit()
        db.close()
        ids = [
            services.manager.create_root("sleep", {"seconds": 8, "steps": 8}).id for _ in range(5)
        ]
    finally:
        services.close()

    def count(sql, params=()):
        with sqlite3.connect(tmp_path / "quaero.db", timeout=30) as db:
            return db.execute(sql, params).fetchone()[0]

    procs("worker", folders["b"] / "config.toml")
    wait_for(lambda: count("SELECT COUNT(*) FROM jobs WHERE status = 'running'") == 1)
    purger = procs("worker", folders["a"] / "config.toml")
    marks = ",".join("?" * len(ids))
    done = f"SELECT COUNT(*) FROM jobs WHERE id IN ({marks}) AND status = 'completed'"
    wait_for(lambda: count(done, ids) == len(ids), timeout=90, interval=0.5)
    assert count(f"SELECT MAX(attempts) FROM jobs WHERE id IN ({marks})", ids) == 1
    lost = f"SELECT COUNT(*) FROM job_logs WHERE job_id IN ({marks}) AND message LIKE '%lost%'"
    assert count(lost, ids) == 0
    wait_for(lambda: count("SELECT COUNT(*) FROM jobs WHERE root_id = ?", [old]) == 0, timeout=90)
    assert "retention: deleted" in purger.output()
    record_figures(
        "retention-purge",
        "1,000,000 expired jobs purged by a worker running jobs (lease 3 s)",
        lost=0,
        stuck=0,
        run_twice=0,
        taken_from_live=0,
    )
