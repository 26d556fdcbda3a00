"""Executors by type name; importing this package registers the built-in ones."""

from quaero.executors import builtin, bulk, crawler  # noqa: F401  (registration on import)
from quaero.executors.base import (
    REGISTRY,
    ChildSpec,
    Executor,
    JobCancelled,
    JobContext,
    PermanentError,
    get_executor,
    public_types,
    register,
)

__all__ = [
    "REGISTRY",
    "ChildSpec",
    "Executor",
    "JobCancelled",
    "JobContext",
    "PermanentError",
    "get_executor",
    "public_types",
    "register",
]
