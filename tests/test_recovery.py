"""Recovery: leases and their heartbeat, the reaper, the orphan sweep and the worker
registry, driven directly (no consumer) on SQLite and on PostgreSQL + Redis."""

import socket
import time

from quaero.models import Job, Worker

BACKENDS = ["sqlite", "postgresql"]  # the same tests on both stores

W = "testhost:1:aaaaaa"


def reload(job):
    return Job.get_by_id(job.id)


def test_expired_lease_is_requeued_then_failed_after_max_attempts(manager, services, recovery):
    job = manager.claim(manager.create_root("noop", {}, max_attempts=2).id, W)
    services.queue.huey.storage.flush_queue()
    Job.update(lease_expires_at=time.time() - 1).where(Job.id == job.id).execute()
    assert recovery.reap_expired_leases() == 1
    assert reload(job).status == "pending" and services.queue.queued_job_ids() == {job.id}
    job = manager.claim(job.id, W)
    assert job.attempts == 2
    Job.update(lease_expires_at=time.time() - 1).where(Job.id == job.id).execute()
    recovery.reap_expired_leases()
    job = reload(job)
    assert job.status == "failed" and job.error == "worker lost"


def test_heartbeat_renews_only_the_leases_of_jobs_being_executed(manager, recovery):
    jobs = [manager.claim(manager.create_root("noop", {}).id, W) for _ in range(3)]
    Job.update(lease_expires_at=time.time() + 1).execute()
    recovery.register_worker(W, 4)
    # the third job's finish failed to write: its worker no longer executes it
    assert recovery.heartbeat(W, [jobs[0].id, jobs[1].id]) == 2
    assert all(reload(j).lease_expires_at > time.time() + 3 for j in jobs[:2])
    assert reload(jobs[2]).lease_expires_at < time.time() + 1.5


def test_a_beat_that_lists_a_job_keeps_it_even_when_its_row_was_not_renewed(manager, recovery):
    """Renewal does not depend on the job's row (issue 19): on PostgreSQL the beat skips
    rows a slow transaction holds, so the reaper also honours the executing ids of the
    holder's last beat, for a lease from that beat; a job the beat left out lapses."""
    recovery.register_worker(W, 4)
    listed, left_out = [manager.claim(manager.create_root("noop", {}).id, W) for _ in range(2)]
    recovery.heartbeat(W, [listed.id])
    # as if the beat had skipped both rows: their leases expired in the jobs table
    Job.update(lease_expires_at=time.time() - 1).execute()
    assert recovery.reap_expired_leases() == 1
    assert reload(listed).status == "running" and reload(left_out).status == "pending"
    # a beat older than a lease renews nothing
    lease = manager.config.jobs.lease_seconds
    Worker.update(last_heartbeat=time.time() - lease - 1).where(Worker.id == W).execute()
    assert recovery.reap_expired_leases() == 1
    assert reload(listed).status == "pending"


def test_dead_local_worker_leases_expire_at_once(manager, recovery):
    dead = f"{socket.gethostname()}:999999999:abcdef"
    recovery.register_worker(dead, 1)
    job = manager.claim(manager.create_root("noop", {}).id, dead)
    assert recovery.expire_dead_workers_leases() == 1
    assert recovery.reap_expired_leases() == 1
    assert reload(job).status == "pending"


def test_a_worker_whose_heartbeat_stopped_loses_its_jobs_a_live_one_keeps_them(manager, recovery):
    silent, live = "elsewhere:1:aaaaaa", "elsewhere:2:bbbbbb"
    for worker_id in (silent, live):
        recovery.register_worker(worker_id, 1)
    lost = manager.claim(manager.create_root("noop", {}).id, silent)
    kept = manager.claim(manager.create_root("noop", {}).id, live)
    timeout = manager.config.jobs.worker_timeout
    Worker.update(last_heartbeat=time.time() - timeout - 1).where(Worker.id == silent).execute()
    assert recovery.expire_dead_workers_leases() == 1
    assert recovery.reap_expired_leases() == 1
    assert reload(lost).status == "pending" and reload(kept).status == "running"


def test_pending_job_without_a_queue_message_is_requeued(manager, services, recovery):
    job = manager.create_root("noop", {})
    services.queue.huey.storage.flush_queue()  # as if the process died before enqueue
    assert recovery.requeue_orphans(grace=0) == 1
    assert services.queue.queued_job_ids() == {job.id}
    assert recovery.requeue_orphans(grace=0) == 0


def test_release_hands_back_held_jobs_without_using_an_attempt(manager, recovery):
    job = manager.claim(manager.create_root("noop", {}).id, W)
    assert recovery.release_worker_jobs(W) == 1
    job = reload(job)
    assert job.status == "pending" and job.attempts == 0 and job.worker_id is None


def _lose_message_of_an_old_job(manager, services, age: float = 100.0):
    """A pending job whose message is gone, last written `age` seconds ago."""
    job = manager.create_root("noop", {})
    services.queue.huey.storage.flush_queue()
    then = time.time() - age
    Job.update(created_at=then, updated_at=then).where(Job.id == job.id).execute()
    return job


def test_the_orphan_sweep_reads_one_message_however_long_the_queue(
    manager, services, recovery, monkeypatch
):
    orphan = _lose_message_of_an_old_job(manager, services)
    services.queue.enqueue([(manager.create_root("noop", {}).id, 0)])  # the queue's head
    services.queue.enqueue([(10_000 + i, 0) for i in range(300)])  # a backlog
    reads = []
    deserialize = services.queue.huey.deserialize_task
    monkeypatch.setattr(
        services.queue.huey, "deserialize_task", lambda data: reads.append(1) or deserialize(data)
    )
    assert recovery.requeue_orphans() == 1  # older than the head: its message was lost
    assert len(reads) <= 1
    assert reload(orphan).updated_at > time.time() - 5  # marked as just enqueued


def test_an_orphan_newer_than_the_queue_head_waits_until_the_head_passes_it(
    manager, services, recovery
):
    head = _lose_message_of_an_old_job(manager, services, age=100.0)
    _lose_message_of_an_old_job(manager, services, age=50.0)
    services.queue.enqueue([(head.id, 0)])
    assert recovery.requeue_orphans() == 0  # its message may still be behind the head
    services.queue.huey.storage.flush_queue()  # the head and whatever followed it ran
    assert recovery.requeue_orphans() == 2
    assert recovery.requeue_orphans() == 0  # each message enqueued once, not every round


def test_a_lower_priority_job_behind_the_head_is_not_an_orphan(manager, services, recovery):
    waiting = _lose_message_of_an_old_job(manager, services)
    urgent = manager.create_root("noop", {}, priority=5)
    Job.update(created_at=time.time() - 10).where(Job.id == urgent.id).execute()
    services.queue.enqueue([(waiting.id, 0), (urgent.id, 5)])
    assert recovery.requeue_orphans() == 0
    assert services.queue.queued_job_ids() == {waiting.id, urgent.id}


def test_a_worker_sweeps_for_orphans_every_few_seconds(manager, services, worker):
    """The sweep reads only the queue's head (cheap at any queue length), so a worker
    runs it every ORPHAN_SWEEP_SECONDS, not every 30 s: a job whose message was lost
    (behind a long queue, found once the head passes it) waits seconds, not half a
    minute."""
    from quaero.worker import ORPHAN_SWEEP_SECONDS

    assert ORPHAN_SWEEP_SECONDS <= 5
    orphan = _lose_message_of_an_old_job(manager, services)
    deadline = time.monotonic() + ORPHAN_SWEEP_SECONDS + 5
    while reload(orphan).status != "completed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reload(orphan).status == "completed"
