"""SQLite has one writer: worker threads that wait for it hand their claims to the thread
that holds it, which writes them all in its transaction and commits once (a group
commit). Each caller still gets its own result or its own exception."""

import threading
import time

import pytest

from quaero.models import Job


def start_waiting_writers(store, fns):
    """Run `store.combined(fn)` for each fn in its own thread while this thread holds
    the writer, so all of them queue; returns the threads and their outcomes by index."""
    outcomes: dict[int, object] = {}

    def write(i, fn):
        try:
            outcomes[i] = store.combined(fn)
        except Exception as exc:  # delivered to this caller, not to the others
            outcomes[i] = exc

    threads = [threading.Thread(target=write, args=(i, fn)) for i, fn in enumerate(fns)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def count_commits(store, monkeypatch) -> list[int]:
    commits = [0]
    commit = store.db.commit

    def counted():
        commits[0] += 1
        return commit()

    monkeypatch.setattr(store.db, "commit", counted)
    return commits


def test_writers_waiting_for_the_sqlite_writer_share_one_commit(services, monkeypatch):
    store, manager = services.store, services.manager
    ids = [manager.create_root("noop", {"i": i}).id for i in range(3)]
    commits = count_commits(store, monkeypatch)
    savepoints = []
    monkeypatch.setattr(store, "_savepoint", lambda fn: savepoints.append(fn) or (fn(), None))

    def rename(job_id):
        return lambda: Job.update(name=f"renamed {job_id}").where(Job.id == job_id).execute()

    with store._write_lock:  # the writer is busy: the three queue behind it
        threads, outcomes = start_waiting_writers(store, [rename(i) for i in ids])
        time.sleep(0.3)
    for thread in threads:
        thread.join(10)
    assert outcomes == {0: 1, 1: 1, 2: 1}  # each caller got its own fn's result
    assert commits[0] == 1 and savepoints == []  # none needed when none raises
    assert [Job.get_by_id(i).name for i in ids] == [f"renamed {i}" for i in ids]


def test_a_write_that_fails_in_a_shared_commit_fails_alone(services):
    store, manager = services.store, services.manager
    ids = [manager.create_root("noop", {"i": i}).id for i in range(3)]

    def rename(job_id, fail=False):
        def fn():
            Job.update(name="renamed").where(Job.id == job_id).execute()
            if fail:
                raise ValueError(f"no {job_id}")
            return job_id

        return fn

    fns = [rename(ids[0]), rename(ids[1], fail=True), rename(ids[2])]
    with store._write_lock:
        threads, outcomes = start_waiting_writers(store, fns)
        time.sleep(0.3)
    for thread in threads:
        thread.join(10)
    assert outcomes[0] == ids[0] and outcomes[2] == ids[2]
    assert isinstance(outcomes[1], ValueError) and str(outcomes[1]) == f"no {ids[1]}"
    names = [Job.get_by_id(i).name for i in ids]
    assert names == ["renamed", "", "renamed"]  # the failed one's write rolled back


def test_a_writer_alone_commits_its_own_write(services, monkeypatch):
    store, manager = services.store, services.manager
    job_id = manager.create_root("noop", {}).id
    commits = count_commits(store, monkeypatch)
    assert store.combined(lambda: Job.update(name="x").where(Job.id == job_id).execute()) == 1
    assert commits[0] == 1
    with pytest.raises(ValueError):
        store.combined(lambda: (_ for _ in ()).throw(ValueError("boom")))
