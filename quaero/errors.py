"""Errors the job manager raises and the web layer turns into JSON error bodies."""

from __future__ import annotations


class QuaeroError(Exception):
    """Base of the errors that carry an HTTP status and a machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(QuaeroError):
    """No such job (or route)."""

    status = 404
    code = "not_found"


class Conflict(QuaeroError):
    """The job is in the wrong state for the operation."""

    status = 409
    code = "conflict"


class ValidationFailed(QuaeroError):
    """Bad input; `fields` maps each bad field to its message."""

    status = 400
    code = "validation_error"


class LeaseLost(Exception):
    """An attempt wrote to a job it no longer holds (cancelled, or its lease was taken
    over): the write was refused and the attempt must stop."""


class Unavailable(QuaeroError):
    """A store (the metadata database or the queue) cannot be reached; try again soon."""

    status = 503
    code = "unavailable"
