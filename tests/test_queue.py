"""The Huey internals quaero subclasses: the prefetching SQLite storage, the no-revoke
mixin and the wakeable worker."""

from __future__ import annotations

import datetime
import threading
import time

import pytest

from quaero.queue import BulkSqliteStorage, JobQueue, NoRevokeMixin
from quaero.worker import WakeableWorker
from tests.helpers import make_config, scale_out_backend


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(make_config(tmp_path, queue={"num_workers": 2}))  # prefetch 8
    yield q
    q.close()


def job_ids(queue: JobQueue, messages: list[bytes]) -> list[int]:
    return [queue.huey.deserialize_task(data).args[0] for data in messages]


def drain(queue: JobQueue) -> list[int]:
    out = []
    while (data := queue.huey.storage.dequeue()) is not None:
        out.append(queue.huey.deserialize_task(data).args[0])
    return out


def test_prefetching_dequeue_takes_a_batch_in_priority_order(queue):
    storage = queue.huey.storage
    assert isinstance(storage, BulkSqliteStorage) and storage.prefetch == 8
    queue.enqueue([(1, 0), (2, 5), (3, 0), (4, 9)])
    first = storage.dequeue()
    assert job_ids(queue, [first]) == [4]
    assert job_ids(queue, storage.prefetched_items()) == [2, 1, 3]
    assert queue.depth() == 0  # the batch left the table at once
    assert queue.queued_job_ids() == {1, 2, 3}  # the orphan sweep still sees them


def test_returned_prefetched_messages_keep_their_priority(queue):
    storage = queue.huey.storage
    queue.enqueue([(1, 0), (2, 5), (3, 7)])
    assert job_ids(queue, [storage.dequeue()]) == [3]  # 2 and 1 now wait in this process
    assert queue.return_prefetched() == 2
    assert storage.prefetched_items() == []
    queue.enqueue([(10, 3)])  # enqueued later, with a priority between theirs
    assert drain(queue) == [2, 10, 1]


def test_enqueue_many_is_one_transaction_with_priorities(queue):
    queue.enqueue([(job_id, job_id % 3) for job_id in range(1, 31)])
    assert queue.depth() == 30
    order = drain(queue)
    priorities = [job_id % 3 for job_id in order]
    assert priorities == sorted(priorities, reverse=True) and sorted(order) == list(range(1, 31))


def test_redis_bulk_enqueue_is_one_command_in_priority_then_arrival_order(tmp_path):
    with scale_out_backend() as backend:
        q = JobQueue(make_config(tmp_path, queue=backend["queue"]))
        try:
            sent = []
            conn = q.huey.storage.conn
            original = conn.execute_command
            conn.execute_command = lambda *args, **kw: sent.append(args[0]) or original(*args, **kw)
            q.enqueue([(job_id, job_id % 3) for job_id in range(1, 301)])
            conn.execute_command = original
            assert sent == ["ZADD"] and q.depth() == 300
            q.enqueue([(1000, 1)])  # later, in the middle priority
            order = drain(q)
        finally:
            q.close()
    by_priority = [[j for j in order if j % 3 == p or j == 1000 and p == 1] for p in (2, 1, 0)]
    assert order == by_priority[0] + by_priority[1] + by_priority[2]
    assert all(ids == sorted(ids) for ids in by_priority) and by_priority[1][-1] == 1000


class FakeStorage:
    def __init__(self) -> None:
        self.deleted: list[str] = []

    def delete(self, key: str) -> bool:
        self.deleted.append(key)
        return True


class NoRevokeStorage(NoRevokeMixin, FakeStorage):
    pass


def test_no_revoke_mixin_never_reads_or_clears_revocations():
    storage = NoRevokeStorage()
    assert storage.is_revoked(object()) is False
    assert storage.is_revoked(object(), timestamp=1.0, peek=False) is False
    assert storage.delete("r:some-task-id") is False  # never set, so never cleared
    assert storage.delete("other-key") is True
    assert storage.deleted == ["other-key"]


def test_no_revoke_huey_runs_a_task_without_revocation_round_trips(queue):
    seen = []
    queue.runner = seen.append
    queue.enqueue([(42, 0)])
    task = queue.huey.dequeue()
    assert queue.huey.is_revoked(task) is False
    queue.huey.execute(task)
    assert seen == [42]


def make_worker(queue: JobQueue, delay: float) -> WakeableWorker:
    worker = WakeableWorker(queue.huey, threading.Event(), delay, delay, 1.0)
    worker.wakeup = queue.wakeup
    return worker


def test_wakeable_worker_wakes_when_its_process_enqueues(queue):
    worker = make_worker(queue, delay=5.0)
    woke = threading.Event()

    def idle() -> None:
        worker.sleep()
        woke.set()

    thread = threading.Thread(target=idle)
    started = time.monotonic()
    thread.start()
    time.sleep(0.1)
    queue.enqueue([(1, 0)])  # notifies the idle workers of this process
    assert woke.wait(2.0)
    assert time.monotonic() - started < 2.0
    thread.join()


def idle_threads(queue: JobQueue, n: int, delay: float):
    """n wakeable workers sharing one poller role, each sleeping in a loop in its own
    thread; yields the list of how many sleeps each has finished."""
    poller: list = [None]
    polls = [0] * n
    stop = threading.Event()

    def idle(i: int) -> None:
        worker = make_worker(queue, delay)
        worker.poller = poller
        while not stop.is_set():
            worker.sleep()
            polls[i] += 1

    threads = [threading.Thread(target=idle, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    return polls, stop, threads


def stop_idle(queue: JobQueue, stop: threading.Event, threads: list) -> None:
    stop.set()
    with queue.wakeup:
        queue.wakeup.notify_all()
    for thread in threads:
        thread.join(5)


def test_of_the_idle_threads_of_a_process_one_polls(queue):
    """An idle process reads the queue once per poll, not once per thread."""
    polls, stop, threads = idle_threads(queue, 3, delay=0.05)
    time.sleep(1.0)
    stop_idle(queue, stop, threads)
    assert 10 <= sum(polls) <= 30, polls  # ~20 polls of 50 ms, not ~60


def test_a_thread_that_runs_a_job_wakes_another_idle_one(queue):
    """So a burst sent by another process reaches every thread, not only the poller."""
    polls, stop, threads = idle_threads(queue, 3, delay=2.0)
    time.sleep(0.2)
    assert polls == [0, 0, 0]
    queue.runner = lambda job_id: None
    queue.huey.execute(queue.task.s(7))
    time.sleep(0.2)  # long before the poller's 2 s
    woken = sum(polls)
    stop_idle(queue, stop, threads)
    assert woken == 1


def test_wakeable_worker_without_a_condition_sleeps_like_huey(queue):
    worker = make_worker(queue, delay=0.05)
    worker.wakeup = None
    started = time.monotonic()
    worker.sleep()
    assert 0.04 <= time.monotonic() - started < 1.0


def test_wakeable_worker_waits_its_delay_when_nothing_comes(queue):
    worker = make_worker(queue, delay=0.2)
    started = time.monotonic()
    worker.sleep()
    assert 0.15 <= time.monotonic() - started < 1.0


def test_sqlite_queue_sizes_are_kept_not_counted(tmp_path):
    from huey.storage import SqliteStorage

    path = tmp_path / "q.db"
    plain = SqliteStorage("quaero", filename=str(path))  # messages from before the counters
    plain.enqueue(b"a", 0)
    plain.enqueue(b"b", 0)
    plain.close()
    q = JobQueue(make_config(tmp_path, queue={"path": str(path), "num_workers": 1}))
    storage = q.huey.storage

    def counted(table: str) -> int:
        return storage.sql(f"select count(*) from {table} where queue = 'quaero'", results=True)[0][
            0
        ]

    assert q.depth() == 2
    q.enqueue([(job_id, job_id % 3) for job_id in range(1, 31)])
    q.enqueue_later(99, 0, 60.0)  # on the queue until a consumer moves it to the schedule
    storage.add_to_schedule(b"later", datetime.datetime.now())
    storage.dequeue()  # takes a batch of 4 (prefetch)
    assert (q.depth(), q.scheduled()) == (counted("task"), counted("schedule")) == (29, 1)
    storage.flush_queue()
    storage.flush_schedule()
    assert (q.depth(), q.scheduled()) == (0, 0)
    q.close()
    again = JobQueue(make_config(tmp_path, queue={"path": str(path), "num_workers": 1}))
    again.enqueue([(1, 0)])
    assert again.depth() == 1  # counted once, then kept
    again.close()
