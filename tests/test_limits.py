"""Per-type limits ([types.<name>] max_running and rate): checked in the claim's
transaction, so they hold across processes; a job over a limit waits as pending with
a reason, and other types are not held up."""

import dataclasses

import pytest

from quaero import config as config_mod
from quaero.config import ConfigError, TypeLimit
from quaero.models import Job

W = "testhost:1:aaaaaa"


def limited(services, **types):
    config = dataclasses.replace(services.config, types=types)
    services.manager.config = config
    services.manager.limits.types = types
    return services.manager


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"max_running": 0}, "types.sleep.max_running"),
        ({"max_running": "2"}, "types.sleep.max_running"),
        ({"rate": "5/h"}, "types.sleep.rate"),
        ({"rate": "0/s"}, "types.sleep.rate"),
        ({"burst": 3}, "types.sleep.burst"),
    ],
)
def test_bad_limits_are_refused_naming_the_key(table, named):
    with pytest.raises(ConfigError, match=named):
        config_mod.build({"types": {"sleep": table}}, environ={})


def test_limits_are_read_per_type():
    config = config_mod.build(
        {"types": {"sleep": {"max_running": 2}, "crawler": {"rate": "30/min"}}}, environ={}
    )
    assert config.types["sleep"] == TypeLimit(max_running=2)
    assert config.types["crawler"].per_second == 0.5 and config.types["crawler"].burst == 30


def test_a_job_over_max_running_waits_with_a_reason_and_other_types_go_on(services):
    manager = limited(services, sleep=TypeLimit(max_running=1))
    first, second = (manager.create_root("sleep", {}) for _ in range(2))
    other = manager.create_root("noop", {})
    assert manager.claim(first.id, W) is not None
    assert manager.claim(second.id, W) is None
    waiting = Job.get_by_id(second.id)
    assert waiting.status == "pending" and waiting.attempts == 0
    assert "max_running" in waiting.waiting_reason and waiting.run_after is not None
    assert manager.claim(other.id, W) is not None  # another type is not held up
    running = Job.get_by_id(first.id)
    assert manager.complete(running, W, None)
    Job.update(run_after=None).where(Job.id == second.id).execute()  # its retry is due
    claimed = manager.claim(second.id, W)
    assert claimed is not None and Job.get_by_id(second.id).waiting_reason is None


def test_a_rate_admits_a_burst_then_waits(services):
    manager = limited(services, noop=TypeLimit(rate="2/s"))
    jobs = [manager.create_root("noop", {}) for _ in range(3)]
    assert [manager.claim(j.id, W) is not None for j in jobs] == [True, True, False]
    reason = Job.get_by_id(jobs[2].id).waiting_reason
    assert "rate 2/s" in reason
