"""The config sections are pydantic models: each key's type and range is declared once,
in its model, and every refusal still names the key."""

import re

import pydantic
import pytest

from quaero import config as config_mod
from quaero.config import ConfigError

BOUNDED = [
    (section, key, info.metadata[0].ge)
    for section, model in config_mod.SECTIONS.items()
    for key, info in model.model_fields.items()
    if info.metadata and getattr(info.metadata[0], "ge", None) is not None
]


def test_every_section_is_a_frozen_model_that_refuses_unknown_keys():
    for section, model in config_mod.SECTIONS.items():
        assert issubclass(model, pydantic.BaseModel), section
        values = config_mod.build({}, environ={})
        with pytest.raises(pydantic.ValidationError):
            setattr(getattr(values, section), next(iter(model.model_fields)), None)
        with pytest.raises(ConfigError, match=rf"unknown key {section}\.nope \(known: "):
            config_mod.build({section: {"nope": 1}}, environ={})


@pytest.mark.parametrize(("section", "key", "minimum"), BOUNDED)
def test_a_value_below_a_models_minimum_is_refused_naming_the_key(section, key, minimum):
    below = minimum - 1 if isinstance(minimum, int) else minimum / 2
    named = re.escape(f"{section}.{key}: {below!r} is below the minimum {minimum:g}")
    with pytest.raises(ConfigError, match=named):
        config_mod.build({section: {key: below}}, environ={})
    # the minimum itself is good (a short worker_timeout wants short heartbeats)
    table = {key: minimum, **({"heartbeat_seconds": 0.1} if key == "worker_timeout" else {})}
    assert getattr(getattr(config_mod.build({section: table}, environ={}), section), key) == minimum


def test_the_minimums_are_the_ones_config_toml_promises():
    assert ("queue", "num_workers", 1) in BOUNDED
    assert ("server", "max_body_bytes", 1024) in BOUNDED
    assert ("crawler", "max_depth", 0) in BOUNDED
    assert len(BOUNDED) == 25


def test_an_environment_override_is_checked_by_the_same_model(monkeypatch):
    with pytest.raises(ConfigError, match=r"queue\.num_workers: 0 is below the minimum 1"):
        config_mod.build({}, environ={"QUAERO_QUEUE_NUM_WORKERS": "0"})
    with pytest.raises(ConfigError, match=r"queue\.worker_type: 'fork' is not one of thread"):
        config_mod.build({}, environ={"QUAERO_QUEUE_WORKER_TYPE": "fork"})


def test_floats_take_ints_but_ints_take_no_floats_or_booleans():
    config = config_mod.build({"jobs": {"lease_seconds": 5}}, environ={})
    assert config.jobs.lease_seconds == 5.0 and isinstance(config.jobs.lease_seconds, float)
    with pytest.raises(ConfigError, match=r"jobs\.max_attempts: expected int, got bool True"):
        config_mod.build({"jobs": {"max_attempts": True}}, environ={})


def test_worker_timeout_must_outlive_a_late_heartbeat():
    with pytest.raises(ConfigError, match=r"jobs\.worker_timeout: 1\.5 must be at least twice"):
        config_mod.build({"jobs": {"worker_timeout": 1.5}}, environ={})


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"max_running": 0}, "types.crawler.max_running: 0 is below the minimum 1"),
        ({"rate": "often"}, "types.crawler.rate: 'often' is not a rate like"),
        ({"burst": 3}, "unknown key types.crawler.burst (known: max_running, rate)"),
    ],
)
def test_type_limits_are_refused_naming_the_key(table, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        config_mod.build({"types": {"crawler": table}}, environ={})
