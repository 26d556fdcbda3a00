"""Configuration: `config.toml` read with tomllib into frozen pydantic models, one a section.

Every key has a default here; `QUAERO_<SECTION>_<KEY>` environment variables override the
file (e.g. `QUAERO_QUEUE_NUM_WORKERS=8`). Unknown keys, wrong types and values out of range
are refused by the models; `_config_error` words pydantic's complaint as a message that
names the key, so a typo never silently falls back to a default.
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
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key."""


class Section(BaseModel):
    """A table of config.toml: frozen, strict (an int is a float, nothing else converts),
    unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class ServerConfig(Section):
    """The web server: where it listens and who may use it."""

    host: str = "127.0.0.1"
    port: int = Field(8085, ge=1)
    api_token: str = ""
    read_only: bool = False
    trusted_proxy: str = ""
    threads: int = Field(8, ge=1)
    max_body_bytes: int = Field(1_000_000, ge=1024)
    connection_limit: int = Field(1000, ge=10)
    request_timeout: float = Field(30.0, ge=1)
    login_attempts_per_minute: int = Field(10, ge=1)


class QueueConfig(Section):
    """The Huey queue and the worker pool that consumes it."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    path: str = "data/queue.db"
    url: str = "redis://127.0.0.1:6379/0"
    name: str = "quaero"
    num_workers: int = Field(5, ge=1)
    worker_type: Literal["thread", "process"] = "thread"
    poll_interval: float = Field(0.1, ge=0.001)


class DatabaseConfig(Section):
    """The metadata store of jobs and logs."""

    url: str = "sqlite:///data/quaero.db"
    max_connections: int = Field(20, ge=2)
    reconnect_wait: float = Field(30.0, ge=0)


class JobsConfig(Section):
    """Retries, leases and retention of jobs."""

    max_attempts: int = Field(3, ge=1)
    lease_seconds: float = Field(30.0, ge=1)
    retry_base_seconds: float = Field(1.0, ge=0)
    retention_days: float = Field(30.0, ge=0)
    reaper_interval: float = Field(2.0, ge=0.1)
    shutdown_grace: float = Field(10.0, ge=0)
    heartbeat_seconds: float = Field(1.0, ge=0.1)
    worker_timeout: float = Field(6.0, ge=1)
    max_children: int = Field(100_000, ge=1)
    max_tree_size: int = Field(1_000_000, ge=1)
    demo_types: bool = False
    bulk_inline_jobs: int = 1000

    @field_validator("worker_timeout")
    @classmethod
    def _outlives_a_late_beat(cls, value: float, info: ValidationInfo) -> float:
        heartbeat = info.data.get("heartbeat_seconds")  # absent when it was refused itself
        if heartbeat is not None and value < 2 * heartbeat:
            raise ValueError(
                f"{value} must be at least twice jobs.heartbeat_seconds ({heartbeat}): "
                "one late beat is no death"
            )
        return value


class CrawlerConfig(Section):
    """Limits and manners of the `crawler` executor."""

    user_agent: str = "quaero"
    timeout: float = Field(10.0, ge=0.1)
    max_bytes: int = Field(5_000_000, ge=1)
    max_pages: int = Field(1000, ge=1)
    max_depth: int = Field(10, ge=0)
    max_redirects: int = Field(5, ge=0)
    respect_robots: bool = True
    allow_private_networks: bool = False
    allow_hosts: list[str] = Field(default_factory=list)


class ExecutorsConfig(Section):
    """The user's own executor modules, imported by every serve, web and worker process."""

    modules: list[str] = Field(default_factory=list)


class ScheduleConfig(Section):
    """One `[[schedules]]` table: a root of `type` created at each tick of `cron` (five
    fields, in `timezone`) or of `every` (seconds; `every = "2s"`, for short periods)."""

    name: str = Field(min_length=1)
    type: str = Field(min_length=1)
    cron: str = ""
    every: float = 0.0
    payload: dict[str, Any] = Field(default_factory=dict)
    timezone: str = "UTC"

    @property
    def expression(self) -> str:
        """The cron expression, or `@every <n>s` for an interval schedule."""
        return self.cron or f"@every {self.every:g}s"

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, cron: str) -> str:
        from croniter import croniter  # only a config with schedules needs it

        if cron and (len(cron.split()) != 5 or not croniter.is_valid(cron)):
            raise ValueError(f"{cron!r} is not a five-field cron expression")
        return cron

    @field_validator("every", mode="before")
    @classmethod
    def _interval(cls, every: object) -> float:
        return parse_every(every)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, timezone: str) -> str:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
        return timezone

    @model_validator(mode="after")
    def _cron_or_every(self) -> ScheduleConfig:
        if bool(self.cron) == ("every" in self.model_fields_set):
            raise ValueError('give either cron (five fields) or every (e.g. "2s")')
        return self


class TypeLimit(Section):
    """One `[types.<name>]` table: limits that hold across every worker process."""

    max_running: int | None = Field(None, ge=1)
    rate: str = ""  # "M/s" or "M/min"

    @field_validator("rate")
    @classmethod
    def _a_rate(cls, rate: str) -> str:
        if rate:
            parse_rate(rate)
        return rate

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


class LoggingConfig(Section):
    """Process logging (what operators read, not the per-job logs)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


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
SECTIONS: dict[str, type[Section]] = {
    f.name: typing.get_type_hints(Config)[f.name]
    for f in dataclasses.fields(Config)
    if f.name not in ("base_dir", *TABLE_SECTIONS)
}


MIN_TOKEN_BITS = 128


def token_variety_bits(token: str) -> float:
    """A token's variety: its length times log2 of the number of distinct characters in
    it. `secrets.token_urlsafe(32)` gives about 215; "aaaaaaaaaaaaaaaa" gives 0. A rough
    upper bound of its entropy, enough to refuse tokens a person made up."""
    distinct = len(set(token))
    return len(token) * math.log2(distinct) if distinct > 1 else 0.0


def _type_name(annotation: object) -> str:
    """`int`, `float`...: what a key's annotation asks for, None left out."""
    kinds = [kind for kind in typing.get_args(annotation) if kind is not type(None)]
    kind = kinds[0] if typing.get_origin(annotation) is not Literal and kinds else annotation
    return getattr(kind, "__name__", str(kind))


def _config_error(
    exc: ValidationError, model: type[Section], where: str, values: dict[str, Any]
) -> ConfigError:
    """pydantic's first complaint about the `values` of a table at `where` ("queue",
    "schedules[0] (a)"), in the words the config has always used, naming the key."""
    err = exc.errors()[0]
    key = str(err["loc"][0]) if err["loc"] else ""
    name = f"{where}.{key}" if key else where
    value, ctx = err["input"], err.get("ctx", {})
    field_info = model.model_fields.get(key)
    if err["type"] == "extra_forbidden":
        return ConfigError(f"unknown key {name} (known: {', '.join(model.model_fields)})")
    if field_info is not None and field_info.is_required():
        return ConfigError(f"{name}: required, a non-empty string")
    if err["type"] == "value_error":
        return ConfigError(f"{name}: {ctx['error']}")
    if err["type"] == "literal_error":
        choices = ", ".join(typing.get_args(field_info.annotation))  # type: ignore[union-attr]
        return ConfigError(f"{name}: {value!r} is not one of {choices}")
    if err["type"] == "greater_than_equal":
        return ConfigError(f"{name}: {value!r} is below the minimum {ctx['ge']:g}")
    if err["type"] == "list_type" or len(err["loc"]) > 1:  # the list or one of its items
        return ConfigError(f"{name}: expected a list of strings, got {values[key]!r}")
    if err["type"] == "dict_type":
        return ConfigError(f"{name}: expected a table, got {value!r}")
    kind = _type_name(field_info.annotation) if field_info else "a value"
    return ConfigError(f"{name}: expected {kind}, got {type(value).__name__} {value!r}")


def _validated(model: type[Section], values: dict[str, Any], where: str) -> Any:
    """`model` from the values of the table at `where`, or a ConfigError naming the key."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _config_error(exc, model, where, values) from None


def _parse_env(name: str, kind: object, text: str) -> object:
    """Turn an environment variable's text into the key's type (the model checks it)."""
    if typing.get_origin(kind) is list:
        return _parse_env_list(name, text)
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(text)
        return kind(text) if kind in (int, float) else text  # type: ignore[operator]
    except ValueError:
        raise ConfigError(f"{name}: expected {_type_name(kind)}, got {text!r}") from None


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
    for section, model in SECTIONS.items():
        values = dict(data.get(section, {}))  # type: ignore[call-overload]
        for key, text in env.get(section, {}).items():
            if key not in model.model_fields:
                raise ConfigError(f"environment override: unknown key {section}.{key}")
            annotation = model.model_fields[key].annotation
            values[key] = _parse_env(f"{section}.{key}", annotation, str(text))
        sections[section] = _validated(model, values, section)
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
        if not isinstance(table, dict):
            raise ConfigError(f"[types.{type_name}] must be a table")
        limits[type_name] = _validated(TypeLimit, table, f"types.{type_name}")
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


def parse_schedules(data: object) -> tuple[ScheduleConfig, ...]:
    """`[[schedules]]` tables, each with a unique `name`, a `type`, and either a
    five-field `cron` (checked by croniter) or `every`."""
    if not isinstance(data, list):
        raise ConfigError("schedules must be an array of tables: [[schedules]]")
    found: dict[str, ScheduleConfig] = {}
    for i, table in enumerate(data):
        if not isinstance(table, dict):
            raise ConfigError(f"schedules[{i}] must be a table")
        try:
            schedule = ScheduleConfig.model_validate(table)
        except ValidationError as exc:
            # named by its name once the name is good (it is checked first)
            err = exc.errors()[0]
            named = err["type"] != "extra_forbidden" and err["loc"][:1] not in (
                ("name",),
                ("type",),
            )
            where = f"schedules[{i}] ({table['name']})" if named else f"schedules[{i}]"
            raise _config_error(exc, ScheduleConfig, where, table) from None
        if schedule.name in found:
            where = f"schedules[{i}] ({schedule.name})"
            raise ConfigError(f"{where}.name: another schedule is named {schedule.name!r}")
        found[schedule.name] = schedule
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
    """A copy of `config` with some keys changed, e.g. replace(c, queue={"num_workers": 2}).
    Unchecked, like a test wants it (port 0: any free port)."""
    changes = {
        name: getattr(config, name).model_copy(update=values) for name, values in sections.items()
    }
    return dataclasses.replace(config, **changes)
