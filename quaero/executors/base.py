"""Executors: the code that does a job's work, registered by `type` name.

An executor acts only through the `JobContext` it is given: it logs, reports progress,
spawns children, checks for cancellation and returns a JSON-able result. Raising fails
the attempt (retried per `max_attempts`); raising `PermanentError` fails it for good.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel

from quaero import clock
from quaero.errors import LeaseLost
from quaero.models import ChildSpec  # re-exported: executors import it from here

if TYPE_CHECKING:
    import peewee

    from quaero.config import Config
    from quaero.jobs import JobManager
    from quaero.models import Job


T = TypeVar("T")


class PermanentError(Exception):
    """An error that retrying cannot fix (bad input, 404): the job fails without retries."""


class JobCancelled(Exception):
    """Raised by `JobContext.raise_if_cancelled` so an executor can stop at once."""


class Executor:
    """Base class of executors. Subclasses set `type` and implement `run`."""

    type: ClassVar[str] = ""
    #: pydantic model of the payload (None: any JSON object): it validates submissions
    #: (400 naming the field) and documents the type in the OpenAPI document. Declare it
    #: as a nested `class Payload(BaseModel)` or assign a model.
    Payload: ClassVar[type[BaseModel] | None] = None
    #: the older name of `Payload`; `register` makes the two agree.
    payload_model: ClassVar[type[BaseModel] | None] = None
    #: False for types that only other executors create (e.g. the crawler's pages).
    public: ClassVar[bool] = True
    #: True for the demo types (noop, sleep, fanout): submittable only with
    #: `[jobs] demo_types = true`, since they create work out of nothing.
    demo: ClassVar[bool] = False

    def run(self, ctx: JobContext) -> dict[str, Any] | None:
        """Do the job's own work and return its result."""
        raise NotImplementedError


REGISTRY: dict[str, type[Executor]] = {}


def register(cls: type[Executor]) -> type[Executor]:
    """Class decorator: make an executor available under its `type` name."""
    if not cls.type:
        raise ValueError(f"{cls.__name__} has no `type` name; set the class attribute")
    _settle_payload_model(cls)
    existing = REGISTRY.get(cls.type)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"executor type {cls.type!r} is already registered by "
            f"{existing.__module__}.{existing.__name__}; choose another name"
        )
    REGISTRY[cls.type] = cls
    return cls


def _settle_payload_model(cls: type[Executor]) -> None:
    """Make `Payload` and `payload_model` name the same model (either may be declared;
    what the class itself declares wins over what it inherits)."""
    own_payload, own_old = cls.__dict__.get("Payload"), cls.__dict__.get("payload_model")
    if own_payload and own_old and own_payload is not own_old:
        raise ValueError(f"{cls.__name__}: Payload and payload_model name different models")
    model = own_payload or own_old or cls.Payload or cls.payload_model
    if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ValueError(f"{cls.__name__}.Payload must be a pydantic BaseModel subclass")
    cls.Payload = cls.payload_model = model


def get_executor(type_name: str) -> type[Executor]:
    """The executor class registered under `type_name` (KeyError if none)."""
    return REGISTRY[type_name]


def public_types(demo: bool) -> list[str]:
    """Names of the executor types a user may submit (`demo`: with the demo types)."""
    return sorted(name for name, cls in REGISTRY.items() if cls.public and (demo or not cls.demo))


class JobContext:
    """What an executor may do with its job; every write goes through the JobManager."""

    #: The cancellation check reads the database at most this often (seconds).
    cancel_check_interval = 0.25
    #: Log lines and progress are written together at most this often (seconds), and
    #: with the job's outcome: one transaction instead of one per line.
    flush_interval = 0.5

    def __init__(self, manager: JobManager, job: Job, config: Config) -> None:
        self.manager = manager
        self.job = job
        self.config = config
        # the claim just proved the job running: the first check can wait an interval
        self._cancel_checked_at = time.monotonic()
        self._cancelled = False
        self._logs: list[tuple[str, str, float]] = []
        self._progress: float | None = None
        self._flushed_at = time.monotonic()
        self._spawned = 0  # children asked for so far: the next one's position

    @property
    def payload(self) -> dict[str, Any]:
        """The job's payload (validated at submit time)."""
        return self.job.payload_data

    def log(self, level: str, message: str) -> None:
        """Append a line to the job's log (level: debug, info, warning, error)."""
        self._logs.append((level, message, clock.now()))
        self._flush_if_due()

    def debug(self, message: str) -> None:
        """Log at debug level."""
        self.log("debug", message)

    def info(self, message: str) -> None:
        """Log at info level."""
        self.log("info", message)

    def warning(self, message: str) -> None:
        """Log at warning level."""
        self.log("warning", message)

    def error(self, message: str) -> None:
        """Log at error level."""
        self.log("error", message)

    def progress(self, fraction: float) -> None:
        """Report the job's own progress, 0..1."""
        self._progress = fraction
        self._flush_if_due()

    def drain(self) -> tuple[list[tuple[str, str, float]], float | None]:
        """Take the buffered log lines and progress (the runner writes them with the
        job's outcome)."""
        logs, progress = self._logs, self._progress
        self._logs, self._progress = [], None
        self._flushed_at = time.monotonic()
        return logs, progress

    def flush(self) -> None:
        """Write buffered log lines and progress now (dropped, and the attempt marked
        stale, if it no longer holds the job)."""
        logs, progress = self.drain()
        if (logs or progress is not None) and not self.manager.write_report(
            self.job, logs, progress
        ):
            self._cancelled = True

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._flushed_at >= self.flush_interval:
            self.flush()

    def spawn(
        self,
        children: list[ChildSpec],
        root_limit: int | None = None,
        *,
        prepare: Callable[[peewee.Database], list[ChildSpec]] | None = None,
    ) -> list[int]:
        """Create child jobs in one transaction and enqueue them; returns the new ids.

        Children whose `dedup_key` already exists in this tree are skipped; children
        without one are keyed by their position, so re-running this job after a crash
        never duplicates them. With `root_limit`, no more are created than keep the
        tree's descendants ≤ the limit. `prepare(db)` runs in the same transaction once
        this attempt is proven to hold the job: it writes the executor's own state and
        returns more children (each with a `dedup_key`); it may run twice if the
        transaction is retried. The tree's known keys are read first, so rows are built
        for new children only. Raises JobCancelled when the job was cancelled or this
        attempt lost its lease.
        """
        first, keyed = self._spawned, []
        for spec in children:
            if spec.dedup_key is None:
                spec = replace(spec, dedup_key=f"#{self.job.id}.{self._spawned}")
            self._spawned += 1
            keyed.append(spec)
        if self._cancelled:
            raise JobCancelled(f"job {self.job.id} was cancelled")
        db = self.manager.db
        try:
            return self.manager.spawn_children(
                self.job,
                keyed,
                root_limit=root_limit,
                position=first,
                prepare=None if prepare is None else lambda: prepare(db),
            )
        except LeaseLost as exc:
            self._cancelled = True
            raise JobCancelled(str(exc)) from None

    def write(self, fn: Callable[[peewee.Database], T]) -> T:
        """Run `fn(db)` in one transaction, only while this attempt holds the job: the
        executor's own tables are never written by a stale attempt (a worker whose lease
        another one took over). Raises JobCancelled, with nothing written, otherwise."""
        if self._cancelled:
            raise JobCancelled(f"job {self.job.id} was cancelled")
        db = self.manager.db
        try:
            return self.manager.write_if_held(self.job, lambda: fn(db))
        except LeaseLost as exc:
            self._cancelled = True
            raise JobCancelled(str(exc)) from None

    def now(self) -> float:
        """The store's clock (epoch seconds), which every worker process shares."""
        return self.manager.store.now()

    def cancelled(self) -> bool:
        """True once the job (or an ancestor) was cancelled, or this attempt lost its
        lease to another one; cheap to call often."""
        if self._cancelled:
            return True
        now = time.monotonic()
        if now - self._cancel_checked_at >= self.cancel_check_interval:
            self._cancel_checked_at = now
            self._cancelled = not self.manager.still_held(self.job)
        return self._cancelled

    def abandon(self) -> None:
        """Mark the job as given up on (timed out): it now reads as cancelled."""
        self._cancelled = True

    def raise_if_cancelled(self) -> None:
        """Raise JobCancelled if the job was cancelled."""
        if self.cancelled():
            raise JobCancelled(f"job {self.job.id} was cancelled")
