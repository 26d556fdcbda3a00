"""Validation of submitted jobs, shared by the API and the command line."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from quaero.errors import ValidationFailed
from quaero.executors.base import REGISTRY, public_types


class CreateJob(BaseModel):
    """The body of `POST /api/jobs`."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=64)
    name: str | None = Field(None, max_length=500)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: int = Field(0, ge=-100, le=100)
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout: float | None = Field(None, gt=0, le=86_400)


def field_errors(exc: ValidationError, prefix: str = "") -> dict[str, str]:
    """pydantic errors as {"dotted.field": "message"}."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = ".".join(str(part) for part in (prefix, *err["loc"]) if part != "")
        fields.setdefault(name or prefix or "body", err["msg"])
    return fields


def validate_create(data: dict[str, Any]) -> CreateJob:
    """Check the body and the payload against the executor's model."""
    try:
        body = CreateJob.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("invalid job", field_errors(exc)) from None
    known = public_types()
    if body.type not in known:
        raise ValidationFailed(
            f"unknown job type {body.type!r}; known types: {', '.join(known)}",
            {"type": f"unknown type; one of {', '.join(known)}"},
        )
    model = REGISTRY[body.type].payload_model
    if model is not None:
        try:
            body.payload = model.model_validate(body.payload).model_dump(mode="json")
        except ValidationError as exc:
            raise ValidationFailed("invalid payload", field_errors(exc, "payload")) from None
    return body
