"""Error groups (issue 16, point 2): an error's variable parts are normalised, and the
group key is stored on the job when it fails for good (and cleared when it is retried)."""

from quaero import triage
from quaero.models import Job
from tests.test_tree_failures import W, tree_with_failed_children

BACKENDS = ["sqlite", "postgresql"]


def test_variable_parts_of_an_error_are_normalised():
    assert triage.normalise("HTTPError: HTTP 503 for https://a.example/p/1?x=2") == (
        "HTTPError: HTTP <n> for <url>"
    )
    assert triage.normalise("ConnectionError: 10.0.0.7:8080 refused after 3.5 s") == (
        "ConnectionError: <addr> refused after <n> s"
    )
    assert triage.normalise("KeyError: 'user_42'\nTraceback ...") == "KeyError: <str>"
    assert triage.normalise("job 3fa85f64-5717-4562-b3fc-2c963f66afa6 lost, id deadbeef42") == (
        "job <id> lost, id <id>"
    )
    assert triage.normalise("cannot open /tmp/x/y.txt at 0x7f3a") == "cannot open <path> at <hex>"


def test_errors_with_the_same_cause_share_a_key_and_others_do_not():
    a = triage.group_key("HTTPError: HTTP 503 for https://a.example/p/1")
    b = triage.group_key("HTTPError: HTTP 404 for http://b.example/")
    c = triage.group_key("Timeout: read timed out after 10 s")
    assert a == b != c and len(a) == 16


def test_a_job_failing_for_good_stores_its_group_and_a_retry_clears_it(backend, manager):
    root_id, ids = tree_with_failed_children(manager, failed=2, ok=1)
    groups = {j.id: j.error_group for j in Job.select().where(Job.root_id == root_id)}
    assert groups[ids[0]] == groups[ids[1]] == triage.group_key("boom")
    assert groups[ids[2]] is None and groups[root_id] is None
    manager.retry_tree(ids[0])
    assert Job.get_by_id(ids[0]).error_group is None
    assert Job.get_by_id(ids[1]).error_group == triage.group_key("boom")


def test_a_retried_attempt_has_no_group_until_it_fails_for_good(backend, manager):
    job = manager.create_root("noop", {}, max_attempts=2)
    claimed = manager.claim(job.id, W)
    assert manager.fail(claimed, W, "flaky 1", None, permanent=False) == "pending"
    assert Job.get_by_id(job.id).error_group is None
