"""Configuration: `config.toml` read with tomllib into frozen dataclasses.

Every key has a default here; `QUAERO_<SECTION>_<KEY>` environment variables override the
file (e.g. `QUAERO_QUEUE_NUM_WORKERS=8`). Unknown keys and wrong types are refused with a
message that names the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


@dataclass(frozen=True)
class ServerConfig:
    """The web server: where it listens and who may use it."""

    host: str = "127.0.0.1"
    port: int = 8085
    api_token: str = ""
    read_only: bool = False
    trusted_proxy: str = ""
    threads: int = 8
    max_body_bytes: int = 1_000_000
    connection_limit: int = 1000
    request_timeout: float = 30.0
    login_attempts_per_minute: int = 10


@dataclass(frozen=True)
class QueueConfig:
    """The Huey queue and the worker pool that consumes it."""

    backend: str = "sqlite"
    path: str = "data/queue.db"
    url: str = "redis://127.0.0.1:6379/0"
    name: str = "quaero"
    num_workers: int = 5
    worker_type: str = "thread"
    poll_interval: float = 0.1


@dataclass(frozen=True)
class DatabaseConfig:
    """The metadata store of jobs and logs."""

    url: str = "sqlite:///data/quaero.db"
    max_connections: int = 20
    reconnect_wait: float = 30.0


@dataclass(frozen=True)
class JobsConfig:
    """Retries, leases and retention of jobs."""

    max_attempts: int = 3
    lease_seconds: float = 30.0
    retry_base_seconds: float = 1.0
    retention_days: float = 30.0
    reaper_interval: float = 2.0
    shutdown_grace: float = 10.0
    heartbeat_seconds: float = 1.0
    worker_timeout: float = 6.0
    max_children: int = 100_000
    max_tree_size: int = 1_000_000
    demo_types: bool = False
    bulk_inline_jobs: int = 1000


@dataclass(frozen=True)
class CrawlerConfig:
    """Limits and manners of the `crawler` executor."""

    user_agent: str = "quaero"
    timeout: float = 10.0
    max_bytes: int = 5_000_000
    max_pages: int = 1000
    max_depth: int = 10
    max_redirects: int = 5
    respect_robots: bool = True
    allow_private_networks: bool = False
    allow_hosts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ExecutorsConfig:
    """The user's own executor modules, imported by every serve, web and worker process."""

    modules: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ScheduleConfig:
    """One `[[schedules]]` table: a root of `type` created at each tick of `cron` (five
    fields, in `timezone`) or of `every` (seconds; `every = "2s"`, for short periods)."""

    name: str
    type: str
    cron: str = ""
    every: float = 0.0
    payload: dict[str, object] = field(default_factory=dict)
    timezone: str = "UTC"

    @property
    def expression(self) -> str:
        """The cron expression, or `@every <n>s` for an interval schedule."""
        return self.cron or f"@every {self.every:g}s"


@dataclass(frozen=True)
class TypeLimit:
    """One `[types.<name>]` table: limits that hold across every worker process."""

    max_running: int | None = None
    rate: str = ""  # "M/s" or "M/min"

    @property
    def per_second(self) -> float | None:
        """The rate in jobs per second, or None when there is no rate."""
        if not self.rate:
            return None
        count, unit = parse_rate(self.rate)
        return count / RATE_UNITS[unit]

    @property
    def burst(self) -> float:
        """The rate's bucket size: M jobs may start at once, then M per unit."""
        return float(parse_rate(self.rate)[0]) if self.rate else 0.0


@dataclass(frozen=True)
class LoggingConfig:
    """Process logging (what operators read, not the per-job logs)."""

    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    """The whole configuration; `base_dir` is the folder relative paths start from."""

    server: ServerConfig = field(default_factory=ServerConfig)
    queue: QueueConfig = field(default_factory=QueueConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    crawler: CrawlerConfig = field(default_factory=CrawlerConfig)
    executors: ExecutorsConfig = field(default_factory=ExecutorsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    schedules: tuple[ScheduleConfig, ...] = ()
    types: dict[str, TypeLimit] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)

    def resolve_path(self, path: str) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    @property
    def queue_path(self) -> Path:
        """Absolute path of the SQLite queue file."""
        return self.resolve_path(self.queue.path)

    @property
    def database_url(self) -> str:
        """The metadata database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest != ":memory:":
                return prefix + str(self.resolve_path(rest))
        return url


#: Tables of keys (`[server]`...); `[[schedules]]` and `[types.<name>]` are read apart.
TABLE_SECTIONS = ("schedules", "types")
SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("base_dir", *TABLE_SECTIONS)
}

CHOICES = {
    ("queue", "backend"): ("sqlite", "redis"),
    ("queue", "worker_type"): ("thread", "process"),
    ("logging", "level"): ("DEBUG", "INFO", "WARNING", "ERROR"),
}

MINIMUMS = {
    ("server", "port"): 1,
    ("server", "threads"): 1,
    ("server", "max_body_bytes"): 1024,
    ("server", "connection_limit"): 10,
    ("server", "request_timeout"): 1,
    ("server", "login_attempts_per_minute"): 1,
    ("queue", "num_workers"): 1,
    ("queue", "poll_interval"): 0.001,
    ("database", "max_connections"): 2,
    ("database", "reconnect_wait"): 0,
    ("jobs", "max_attempts"): 1,
    ("jobs", "lease_seconds"): 1,
    ("jobs", "retry_base_seconds"): 0,
    ("jobs", "retention_days"): 0,
    ("jobs", "reaper_interval"): 0.1,
    ("jobs", "shutdown_grace"): 0,
    ("jobs", "heartbeat_seconds"): 0.1,
    ("jobs", "worker_timeout"): 1,
    ("jobs", "max_children"): 1,
    ("jobs", "max_tree_size"): 1,
    ("crawler", "timeout"): 0.1,
    ("crawler", "max_bytes"): 1,
    ("crawler", "max_pages"): 1,
    ("crawler", "max_depth"): 0,
    ("crawler", "max_redirects"): 0,
}


MIN_TOKEN_BITS = 128


def token_variety_bits(token: str) -> float:
    """A token's variety: its length times log2 of the number of distinct characters in
    it. `secrets.token_urlsafe(32)` gives about 215; "aaaaaaaaaaaaaaaa" gives 0. A rough
    upper bound of its entropy, enough to refuse tokens a person made up."""
    distinct = len(set(token))
    return len(token) * math.log2(distinct) if distinct > 1 else 0.0


def _coerce(name: str, kind: type, value: object) -> object:
    """Check one value against its declared type; ints are accepted for floats."""
    if typing.get_origin(kind) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name}: expected a list of strings, got {value!r}")
        return list(value)
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{name}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _parse_env(name: str, kind: type, text: str) -> object:
    """Turn an environment variable's text into the key's type."""
    if typing.get_origin(kind) is list:
        return _parse_env_list(name, text)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        return kind(text)
    except ValueError:
        raise ConfigError(f"{name}: expected {kind.__name__}, got {text!r}") from None


def _parse_env_list(name: str, text: str) -> list[str]:
    """A list key from the environment: a JSON array of strings (`["a", "b:8080"]`), or
    comma-separated words (`a, b:8080`)."""
    if not text.strip().startswith("["):
        return [part.strip() for part in text.split(",") if part.strip()]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        value = exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        variable = "QUAERO_" + name.replace(".", "_").upper()
        raise ConfigError(
            f"{name}: {variable} must be a JSON array of strings "
            f'(e.g. \'["intranet.local", "wiki.local:8080"]\') or comma-separated, '
            f"got {text!r}"
        )
    return value


def _env_overrides(environ: typing.Mapping[str, str]) -> dict[str, dict[str, object]]:
    """Collect `QUAERO_<SECTION>_<KEY>` variables as raw strings, by section; a known
    section with an unknown key is an error (a typo must not pass silently)."""
    found: dict[str, dict[str, object]] = {}
    for var, text in environ.items():
        if not var.startswith("QUAERO_"):
            continue
        rest = var[len("QUAERO_") :].lower()
        section = next((s for s in SECTIONS if rest.startswith(s + "_")), None)
        if section is None:  # QUAERO_CONFIG, test hooks: not a config key
            continue
        found.setdefault(section, {})[rest[len(section) + 1 :]] = text
    return found


def build(
    data: dict[str, object],
    base_dir: Path | None = None,
    environ: typing.Mapping[str, str] | None = None,
) -> Config:
    """Validate a parsed TOML document (plus environment overrides) into a Config."""
    environ = os.environ if environ is None else environ
    env = _env_overrides(environ)
    sections: dict[str, object] = {}
    for section in data:
        if section in TABLE_SECTIONS:
            continue
        if section not in SECTIONS:
            known = ", ".join([*SECTIONS, *TABLE_SECTIONS])
            raise ConfigError(f"unknown section [{section}] (known: {known})")
        if not isinstance(data[section], dict):
            raise ConfigError(f"[{section}] must be a table")
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        given = dict(data.get(section, {}))  # type: ignore[arg-type]
        for key, value in given.items():
            if key not in hints:
                raise ConfigError(f"unknown key {section}.{key} (known: {', '.join(hints)})")
            values[key] = _coerce(f"{section}.{key}", hints[key], value)
        for key, text in env.get(section, {}).items():
            if key not in hints:
                raise ConfigError(f"environment override: unknown key {section}.{key}")
            values[key] = _parse_env(f"{section}.{key}", hints[key], str(text))
        for key, value in values.items():
            choices = CHOICES.get((section, key))
            if choices and value not in choices:
                raise ConfigError(f"{section}.{key}: {value!r} is not one of {', '.join(choices)}")
            minimum = MINIMUMS.get((section, key))
            if minimum is not None and value < minimum:  # type: ignore[operator]
                raise ConfigError(f"{section}.{key}: {value!r} is below the minimum {minimum}")
        sections[section] = cls(**values)
    jobs: JobsConfig = sections["jobs"]  # type: ignore[assignment]
    if jobs.worker_timeout < 2 * jobs.heartbeat_seconds:
        raise ConfigError(
            f"jobs.worker_timeout ({jobs.worker_timeout}) must be at least twice "
            f"jobs.heartbeat_seconds ({jobs.heartbeat_seconds}): one late beat is no death"
        )
    sections["schedules"] = parse_schedules(data.get("schedules", []))
    sections["types"] = parse_types(data.get("types", {}))
    return Config(base_dir=base_dir or Path.cwd(), **sections)  # type: ignore[arg-type]


RATE = re.compile(r"\s*([0-9]+)\s*/\s*(s|min)\s*")
RATE_UNITS = {"s": 1.0, "min": 60.0}
EVERY = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|min|h)\s*")
EVERY_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}


def parse_rate(text: str) -> tuple[int, str]:
    """`"5/s"` → (5, "s"); `"30/min"` → (30, "min"); ValueError otherwise."""
    match = RATE.fullmatch(text)
    if not match or int(match.group(1)) < 1:
        raise ValueError(f'{text!r} is not a rate like "5/s" or "30/min"')
    return int(match.group(1)), match.group(2)


def parse_types(data: object) -> dict[str, TypeLimit]:
    """`[types.<name>]` tables: `max_running` (>= 1) and `rate` ("M/s" or "M/min")."""
    if not isinstance(data, dict):
        raise ConfigError("[types] must hold tables: [types.<name>]")
    limits: dict[str, TypeLimit] = {}
    for type_name, table in data.items():
        where = f"types.{type_name}"
        if not isinstance(table, dict):
            raise ConfigError(f"[{where}] must be a table")
        for key in table:
            if key not in ("max_running", "rate"):
                raise ConfigError(f"unknown key {where}.{key} (known: max_running, rate)")
        max_running = table.get("max_running")
        if max_running is not None:
            _coerce(f"{where}.max_running", int, max_running)
            if max_running < 1:
                raise ConfigError(f"{where}.max_running: {max_running!r} is below the minimum 1")
        rate = _coerce(f"{where}.rate", str, table.get("rate", ""))
        if rate:
            try:
                parse_rate(rate)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ConfigError(f"{where}.rate: {exc}") from None
        limits[type_name] = TypeLimit(max_running=max_running, rate=rate)  # type: ignore[arg-type]
    return limits


def parse_every(text: object) -> float:
    """`"2s"`, `"500ms"`, `"5min"`, `"1h"` or a number of seconds → seconds (> 0)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = EVERY.fullmatch(str(text))
        if not match:
            raise ValueError(f'{text!r} is not an interval like "2s", "5min" or "1h"')
        seconds = float(match.group(1)) * EVERY_UNITS[match.group(2)]
    if seconds < 0.1:
        raise ValueError(f"{text!r} is shorter than 0.1 s")
    return seconds


SCHEDULE_KEYS = ("name", "cron", "every", "type", "payload", "timezone")


def parse_schedules(data: object) -> tuple[ScheduleConfig, ...]:
    """`[[schedules]]` tables, each with a unique `name`, a `type`, and either a
    five-field `cron` (checked by croniter) or `every`."""
    from croniter import croniter  # only a config with schedules needs it

    if not isinstance(data, list):
        raise ConfigError("schedules must be an array of tables: [[schedules]]")
    found: dict[str, ScheduleConfig] = {}
    for i, table in enumerate(data):
        where = f"schedules[{i}]"
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        for key in table:
            if key not in SCHEDULE_KEYS:
                raise ConfigError(f"unknown key {where}.{key} (known: {', '.join(SCHEDULE_KEYS)})")
        for key in ("name", "type"):
            if not isinstance(table.get(key), str) or not table[key]:
                raise ConfigError(f"{where}.{key}: required, a non-empty string")
        name = table["name"]
        where = f"schedules[{i}] ({name})"
        if name in found:
            raise ConfigError(f"{where}.name: another schedule is named {name!r}")
        cron = _coerce(f"{where}.cron", str, table.get("cron", ""))
        if bool(cron) == ("every" in table):
            raise ConfigError(f'{where}: give either cron (five fields) or every (e.g. "2s")')
        every = 0.0
        if cron and (len(cron.split()) != 5 or not croniter.is_valid(cron)):  # type: ignore[union-attr]
            raise ConfigError(f"{where}.cron: {cron!r} is not a five-field cron expression")
        if "every" in table:
            try:
                every = parse_every(table["every"])
            except ValueError as exc:
                raise ConfigError(f"{where}.every: {exc}") from None
        payload = table.get("payload", {})
        if not isinstance(payload, dict):
            raise ConfigError(f"{where}.payload: expected a table, got {payload!r}")
        timezone = _coerce(f"{where}.timezone", str, table.get("timezone", "UTC"))
        try:
            zoneinfo.ZoneInfo(timezone)  # type: ignore[arg-type]
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{where}.timezone: unknown time zone {timezone!r}") from None
        found[name] = ScheduleConfig(
            name=name,
            type=table["type"],
            cron=cron,  # type: ignore[arg-type]
            every=every,
            payload=payload,
            timezone=timezone,  # type: ignore[arg-type]
        )
    return tuple(found.values())


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read the config file (if any) and environment overrides into a Config.

    With no path, `$QUAERO_CONFIG` or `./config.toml` is used when it exists; otherwise
    the defaults apply, relative to the current folder.
    """
    if path is None:
        path = os.environ.get("QUAERO_CONFIG") or "config.toml"
        if not Path(path).exists():
            return build({})
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return build(data, base_dir=p.resolve().parent)


def replace(config: Config, **sections: dict[str, object]) -> Config:
    """A copy of `config` with some keys changed, e.g. replace(c, queue={"num_workers": 2})."""
    changes = {
        name: dataclasses.replace(getattr(config, name), **values)
        for name, values in sections.items()
    }
    return dataclasses.replace(config, **changes)
