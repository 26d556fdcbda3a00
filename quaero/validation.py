"""Validation of submitted jobs, shared by the API and the command line."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from quaero.errors import ValidationFailed
from quaero.executors.base import REGISTRY, public_types
from quaero.policies import POLICIES

MAX_PAYLOAD_BYTES = 64 * 1024  # a payload's JSON, UTF-8 encoded
MAX_PAYLOAD_DEPTH = 20  # nested objects and arrays in a payload, the payload itself included
MAX_NAME_CHARS = 500  # a job's name, given or taken from its URL
MAX_DELAY_SECONDS = 366 * 86_400  # a job may be scheduled up to a year ahead

# How the document shows run_at's two forms (the validator below checks them).
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
EpochSeconds = Annotated[
    float, WithJsonSchema({"type": "number", "minimum": 0, "description": "epoch seconds"})
]


class CreateJob(BaseModel):
    """The body of `POST /api/jobs`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64, description="executor")
    name: str | None = Field(None, max_length=MAX_NAME_CHARS)
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description=f"at most {MAX_PAYLOAD_BYTES} bytes of JSON and {MAX_PAYLOAD_DEPTH} "
        "levels deep",
    )
    priority: int = Field(0, ge=-100, le=100)
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout: float | None = Field(None, gt=0, le=86_400, description="seconds")
    run_at: EpochSeconds | IsoTime | None = Field(
        None,
        description="start no earlier than this (ISO 8601 with its zone, or epoch seconds; "
        "at most a year ahead); not with delay",
    )
    delay: float | None = Field(
        None,
        ge=0,
        le=MAX_DELAY_SECONDS,
        description="start no earlier than this many seconds from now; not with run_at",
    )
    on_child_failure: Literal[POLICIES] | None = Field(  # type: ignore[valid-type]
        None,
        description="what a descendant's failure means (default ignore; a payload's "
        "on_child_failure is taken when this is not given)",
    )

    @field_validator("run_at")
    @classmethod
    def _epoch_seconds(cls, value: float | str | None) -> float | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                at = dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    "must be ISO 8601 (2026-01-01T10:00:00Z) or epoch seconds"
                ) from None
            if at.tzinfo is None:
                raise ValueError("must name its time zone (a Z or +hh:mm suffix)")
            try:
                value = at.timestamp()
            except (OverflowError, ValueError):
                value = -1.0
        if not 0 <= value <= time.time() + MAX_DELAY_SECONDS:
            raise ValueError("must be after 1970 and at most a year from now")
        return value

    @model_validator(mode="after")
    def _one_start_time(self) -> CreateJob:
        if self.run_at is not None and self.delay is not None:
            raise ValueError("give run_at or delay, not both")
        return self

    def run_after(self, now: float) -> float | None:
        """When the job may start (epoch seconds), or None for at once."""
        if self.delay:
            return now + self.delay
        return float(self.run_at) if self.run_at is not None else None

    @field_validator("name")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") that JSON let through
        return False
    return True


def json_problems(body: dict[str, Any]) -> dict[str, str]:
    """Field-named problems of a JSON body that no model catches: nesting deeper than
    MAX_PAYLOAD_DEPTH, lone surrogates, NaN/Infinity, a payload over MAX_PAYLOAD_BYTES.

    Walks iteratively, so a hostile depth cannot exhaust the stack.
    """
    stack: list[tuple[Any, str, int]] = [(value, str(key), 1) for key, value in body.items()]
    while stack:
        value, path, depth = stack.pop()
        if not _valid_text(path):
            return {path.encode("utf-8", "replace").decode(): "not valid Unicode"}
        if isinstance(value, (dict, list)):
            if depth > MAX_PAYLOAD_DEPTH:
                top = path.split(".", 1)[0]
                return {top: f"nested deeper than {MAX_PAYLOAD_DEPTH} levels"}
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack.extend((child, f"{path}.{key}", depth + 1) for key, child in items)
        elif isinstance(value, str) and not _valid_text(value):
            return {path: "not valid Unicode (a lone surrogate)"}
        elif isinstance(value, float) and not math.isfinite(value):
            return {path: "must be a finite number"}
    payload = body.get("payload")
    if payload is not None:
        size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
        if size > MAX_PAYLOAD_BYTES:
            return {"payload": f"{size} bytes of JSON, more than {MAX_PAYLOAD_BYTES}"}
    return {}


# pydantic prefixes what our validators raise; the message is ours without it.
PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")


def _our_words(message: str) -> str:
    for prefix in PYDANTIC_PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def field_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """pydantic errors as {"dotted.field": "message"}."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        fields.setdefault(name or prefix or "body", _our_words(err["msg"]))
    return fields


def validate_create(data: dict[str, Any], *, demo_types: bool) -> CreateJob:
    """Check the body and the payload against the executor's model (`demo_types`: the
    demo types may be submitted, `[jobs] demo_types`)."""
    problems = json_problems(data)
    if problems:
        raise ValidationFailed("invalid job: " + "; ".join(problems.values()), problems)
    try:
        body = CreateJob.model_validate(data)
    except ValidationError as exc:
        fields = field_errors(exc)
        if "body" in fields and "run_at" in data:  # the one check across fields
            fields["run_at"] = fields.pop("body")
        raise ValidationFailed("invalid job", fields) from None
    known = public_types(demo_types)
    if body.type not in known:
        raise ValidationFailed(
            f"unknown job type {body.type!r}; known types: {', '.join(known)}",
            {"type": f"unknown type; one of {', '.join(known)}"},
        )
    model = REGISTRY[body.type].Payload
    if model is not None:
        try:
            body.payload = model.model_validate(body.payload).model_dump(mode="json")
        except ValidationError as exc:
            raise ValidationFailed("invalid payload", field_errors(exc, "payload")) from None
    return body


def job_name(body: CreateJob) -> str:
    """The given name, else the payload's URL, else the type: at most MAX_NAME_CHARS."""
    return (body.name or str(body.payload.get("url") or body.type))[:MAX_NAME_CHARS]
