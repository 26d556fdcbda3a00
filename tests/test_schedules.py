"""Cron schedules: config checks, tick arithmetic, exactly one root per tick whoever
races for it, a missed tick run once at start, GET /api/schedules."""

import dataclasses
import re

import pytest

from quaero import config as config_mod
from quaero.config import ConfigError
from quaero.models import Job
from quaero.schedules import Scheduler, latest_tick, next_tick, schedules_to_dicts


def schedules(*tables):
    return config_mod.build({"schedules": list(tables)}, environ={}).schedules


def with_schedules(services, *tables):
    config = dataclasses.replace(services.config, schedules=schedules(*tables))
    services.manager.config = config
    return config


EVERY_2S = {"name": "tick", "every": "2s", "type": "noop", "payload": {"n": 1}}


def test_a_schedule_takes_a_five_field_cron_or_an_interval():
    (cron,) = schedules({"name": "nightly", "cron": "0 3 * * *", "type": "noop"})
    assert cron.expression == "0 3 * * *" and cron.timezone == "UTC"
    (every,) = schedules(EVERY_2S)
    assert every.every == 2.0 and every.expression == "@every 2s"


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ({"name": "a", "cron": "* * * *", "type": "noop"}, "schedules[0] (a).cron"),
        ({"name": "a", "cron": "0 3 * * * *", "type": "noop"}, "schedules[0] (a).cron"),
        ({"name": "a", "type": "noop"}, "either cron"),
        ({"name": "a", "cron": "* * * * *", "every": "2s", "type": "noop"}, "either cron"),
        ({"name": "a", "every": "soon", "type": "noop"}, "schedules[0] (a).every"),
        ({"name": "a", "every": "2s", "type": "noop", "timezone": "Mars/Base"}, "timezone"),
        ({"name": "a", "every": "2s", "type": "noop", "when": 1}, "schedules[0].when"),
        ({"every": "2s", "type": "noop"}, "schedules[0].name"),
    ],
)
def test_bad_schedules_are_refused_naming_the_key(table, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        schedules(table)


def test_two_schedules_may_not_share_a_name():
    with pytest.raises(ConfigError, match="another schedule is named"):
        schedules(EVERY_2S, EVERY_2S)


def test_ticks_follow_the_cron_expression_in_its_time_zone():
    (paris,) = schedules(
        {"name": "p", "cron": "0 3 * * *", "type": "noop", "timezone": "Europe/Paris"}
    )
    noon_utc = 1_767_268_800.0  # 2026-01-01T12:00:00Z; Paris is UTC+1 in winter
    assert latest_tick(paris, noon_utc) == noon_utc - 10 * 3600  # 03:00 Paris = 02:00 UTC
    assert next_tick(paris, noon_utc) == noon_utc + 14 * 3600
    (every,) = schedules(EVERY_2S)
    assert latest_tick(every, 101.5) == 100.0 and next_tick(every, 101.5) == 102.0


def roots(name="tick"):
    return list(Job.select().where(Job.parent_id.is_null(), Job.name == name).order_by(Job.id))


def test_many_schedulers_create_one_root_per_tick(services):
    with_schedules(services, EVERY_2S)
    racers = [Scheduler(services.manager) for _ in range(3)]
    for scheduler in racers:
        scheduler.start(now=1000.5)  # never ran: the first tick is the next one
    assert [s.run_due(now=1001.0) for s in racers] == [[], [], []]
    created = [s.run_due(now=1002.01) for s in racers]
    assert sum(len(ids) for ids in created) == 1
    created += [s.run_due(now=1004.2) for s in reversed(racers)]
    assert sum(len(ids) for ids in created) == 2
    assert [r.payload_data for r in roots()] == [{"n": 1}, {"n": 1}]


def test_a_tick_missed_while_everything_was_down_runs_once_at_start(services):
    with_schedules(services, EVERY_2S)
    first = Scheduler(services.manager)
    first.start(now=1000.5)
    assert len(first.run_due(now=1002.0)) == 1
    later = Scheduler(services.manager)  # everything was down from 1003 to 1100.7
    later.start(now=1100.7)
    assert len(later.run_due(now=1100.7)) == 1  # the tick of 1100, once
    assert later.run_due(now=1101.0) == []
    assert len(roots()) == 2


def test_schedules_are_listed_with_their_next_run_and_last_root(services):
    config = with_schedules(services, EVERY_2S)
    services.manager.config = config
    scheduler = Scheduler(services.manager)
    scheduler.start(now=1000.5)
    (root_id,) = scheduler.run_due(now=1002.0)
    (listed,) = schedules_to_dicts(services.manager, now=1003.0)
    assert listed == {
        "name": "tick",
        "cron": "@every 2s",
        "type": "noop",
        "next_run_at": "1970-01-01T00:16:44.000Z",
        "last_root_id": root_id,
    }


def test_the_page_shows_a_schedules_panel_without_javascript(services, client):
    assert b"schedules-table" not in client.get("/jobs").data  # no schedules, no panel
    with_schedules(services, EVERY_2S)
    page = client.get("/jobs").get_data(as_text=True)
    assert 'id="schedules-table"' in page and "<code>@every 2s</code>" in page
    assert 'data-schedule="tick"' in page
