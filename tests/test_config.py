"""The config loader: defaults, types, unknown keys, overrides, paths."""

from pathlib import Path

import pytest

from quaero import config as config_mod
from quaero.config import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_the_shipped_config_loads_and_matches_the_spec_defaults():
    config = config_mod.load(Path(__file__).resolve().parent.parent / "config.toml")
    assert config.server.host == "127.0.0.1" and config.server.port == 8085
    assert config.queue.backend == "sqlite" and config.queue.num_workers == 5
    assert config.queue.poll_interval == 0.1
    assert config.jobs.max_attempts == 3 and config.jobs.lease_seconds == 30
    assert config.crawler.allow_private_networks is False
    assert config.queue_path != Path(config.database_url.removeprefix("sqlite:///"))


def test_every_key_of_the_shipped_config_is_commented():
    text = (Path(__file__).resolve().parent.parent / "config.toml").read_text()
    keys = [line for line in text.splitlines() if "=" in line and not line.startswith("#")]
    assert keys and all("#" in line for line in keys), [k for k in keys if "#" not in k]


def test_missing_file_gives_defaults_from_code(tmp_path):
    config = config_mod.load(write(tmp_path, ""))
    assert config.queue.num_workers == 5
    assert config.queue_path == tmp_path / "data" / "queue.db"
    assert config.database_url == f"sqlite:///{tmp_path}/data/quaero.db"


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key queue\.num_worker\b"):
        config_mod.load(write(tmp_path, "[queue]\nnum_worker = 3\n"))


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[qeue\]"):
        config_mod.load(write(tmp_path, "[qeue]\nnum_workers = 3\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ('[queue]\nnum_workers = "five"\n', "queue.num_workers"),
        ("[server]\nport = 80.5\n", "server.port"),
        ('[crawler]\nrespect_robots = "yes"\n', "crawler.respect_robots"),
        ("[queue]\nnum_workers = true\n", "queue.num_workers"),
    ],
)
def test_wrong_type_is_named(tmp_path, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ": expected"):
        config_mod.load(write(tmp_path, text))


def test_choices_and_minimums(tmp_path):
    with pytest.raises(ConfigError, match="queue.backend"):
        config_mod.load(write(tmp_path, '[queue]\nbackend = "kafka"\n'))
    with pytest.raises(ConfigError, match="queue.num_workers"):
        config_mod.load(write(tmp_path, "[queue]\nnum_workers = 0\n"))


def test_bad_toml_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(write(tmp_path, "[queue\n"))


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("QUAERO_QUEUE_NUM_WORKERS", "7")
    monkeypatch.setenv("QUAERO_CRAWLER_RESPECT_ROBOTS", "false")
    config = config_mod.load(write(tmp_path, "[queue]\nnum_workers = 3\n"))
    assert config.queue.num_workers == 7
    assert config.crawler.respect_robots is False


def test_bad_environment_override_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("QUAERO_QUEUE_NUM_WORKERS", "many")
    with pytest.raises(ConfigError, match="queue.num_workers"):
        config_mod.load(write(tmp_path, ""))


def test_paths_are_relative_to_the_config_file(tmp_path):
    sub = tmp_path / "etc"
    sub.mkdir()
    config = config_mod.load(write(sub, '[queue]\npath = "q/queue.db"\n'))
    assert config.queue_path == sub / "q" / "queue.db"


def test_nonexistent_config_path_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        config_mod.load(tmp_path / "nope.toml")


def test_environment_variables_of_other_sections_are_not_config(tmp_path, monkeypatch):
    monkeypatch.setenv("QUAERO_SOAK_SECONDS", "5")
    assert config_mod.load(write(tmp_path, "")).queue.num_workers == 5


def test_list_keys_from_file_and_environment(tmp_path, monkeypatch):
    config = config_mod.load(write(tmp_path, '[crawler]\nallow_hosts = ["a.local"]\n'))
    assert config.crawler.allow_hosts == ["a.local"]
    with pytest.raises(ConfigError, match="crawler.allow_hosts: expected a list"):
        config_mod.load(write(tmp_path, '[crawler]\nallow_hosts = "a.local"\n'))
    monkeypatch.setenv("QUAERO_CRAWLER_ALLOW_HOSTS", "a.local, b.local:8080")
    assert config_mod.load(write(tmp_path, "")).crawler.allow_hosts == ["a.local", "b.local:8080"]
