"""Bulk actions (issue 16, point 3): retry, cancel, delete, pause or resume every tree a
filter matches.

A filter is roots' filters (`status`, `type`, `q`, `has_failures`, or `ids`), a tree
(`root_id`: the tree under that job), or an error group (`error_group`, in one tree with
`root_id` or across all). `count` says how many jobs an action touches, from the trees'
counters (the page asks first with that number); `run` does it one tree per
transaction, so no lock is held long and a tree in the wrong state is skipped, not an
error. The API runs small actions at once and large ones as a `bulk` job
(quaero/executors/bulk.py), whose progress is the share of trees done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import peewee
import pydantic
from pydantic import BaseModel, ConfigDict, Field

from quaero import queries
from quaero.errors import Conflict, NotFound, ValidationFailed
from quaero.models import MAX_ID, STATUSES, UNFINISHED, Job

if TYPE_CHECKING:
    from quaero.jobs import JobManager

ACTIONS = ("retry", "cancel", "delete", "pause", "resume")
GROUP_ACTIONS = ("retry",)  # failed jobs are final: retrying them is all that applies
MAX_IDS = 1000
MAX_TEXT_CHARS = 200  # a filter's type, q or error_group
FILTER_KEYS = ("status", "type", "q", "has_failures", "ids", "root_id", "error_group")
TEXT_KEYS = ("type", "q", "error_group")

JobId = Annotated[int, Field(ge=1, le=MAX_ID)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS)]


class BulkRequestFilter(BaseModel):
    """Roots' filters (status, type, q, has_failures), a tree (root_id), an error group
    (error_group, alone or with root_id), or ids (a list of root ids); at least one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    status: Literal[tuple(STATUSES)] = None  # type: ignore[valid-type]
    type: Text = None  # type: ignore[assignment]
    q: Text = None  # type: ignore[assignment]
    has_failures: bool = None  # type: ignore[assignment]
    ids: list[JobId] = Field(None, max_length=MAX_IDS)
    root_id: JobId = None  # type: ignore[assignment]
    error_group: Text = None  # type: ignore[assignment]


# The body's model: `parse` validates with it and the OpenAPI document shows it.
class BulkRequest(BaseModel):
    """The body of `POST /api/jobs/bulk`."""

    action: Literal[ACTIONS]  # type: ignore[valid-type]
    filter: BulkRequestFilter
    dry_run: bool = Field(
        False, description="only count what the action would touch (the page asks first)"
    )


#: How `parse` words a problem with each field of `BulkRequest`.
MESSAGES = {
    "action": f"one of {', '.join(ACTIONS)}",
    "dry_run": "true or false",
    **{f"filter.{key}": f"a string of 1 to {MAX_TEXT_CHARS} characters" for key in TEXT_KEYS},
    "filter.status": f"one of {', '.join(STATUSES)}",
    "filter.has_failures": "true or false",
    "filter.root_id": "a job id",
    "filter.ids": f"a list of at most {MAX_IDS} job ids",
}


@dataclass(frozen=True)
class BulkFilter:
    """What a bulk action applies to (see the module's docstring)."""

    status: str | None = None
    type: str | None = None
    q: str | None = None
    has_failures: bool | None = None
    ids: tuple[int, ...] | None = None
    root_id: int | None = None
    error_group: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The filter as the bulk job's payload stores it."""
        data = {k: getattr(self, k) for k in FILTER_KEYS if getattr(self, k) is not None}
        if self.ids is not None:
            data["ids"] = list(self.ids)
        return data


def parse(body: dict[str, Any]) -> tuple[str, BulkFilter, bool]:
    """(action, filter, dry_run) from a request body, or ValidationFailed naming fields.

    The body is checked by `BulkRequest`, the model the OpenAPI document shows, so each
    limit lives there; each problem is worded as the API always has (`MESSAGES`). A
    filter's null values count as absent. The rules across keys follow."""
    raw = body.get("filter")
    if not isinstance(raw, dict) or not raw:
        errors = {} if body.get("action") in ACTIONS else {"action": MESSAGES["action"]}
        raise ValidationFailed(
            "filter must be a non-empty object", {**errors, "filter": "a non-empty object"}
        )
    given = {**body, "filter": {k: v for k, v in raw.items() if v is not None}}
    try:
        request = BulkRequest.model_validate(given, strict=True)
    except pydantic.ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"][:2])
            if error["type"] == "extra_forbidden":
                problems[field] = f"unknown filter (known: {', '.join(FILTER_KEYS)})"
            else:
                problems[field] = MESSAGES.get(field, error["msg"])
        raise ValidationFailed("invalid bulk action: " + "; ".join(problems), problems) from None
    action, dry_run = request.action, request.dry_run
    values = request.filter.model_dump(exclude_none=True)
    if "ids" in values:
        values["ids"] = tuple(values["ids"])
    errors: dict[str, str] = {}
    if "error_group" in values and action not in GROUP_ACTIONS:
        errors["filter.error_group"] = "an error group's jobs have failed: only retry applies"
    tree_or_group = "root_id" in values or "error_group" in values
    roots_filters = sorted(k for k in ("status", "type", "q", "has_failures", "ids") if k in values)
    if tree_or_group and roots_filters:
        errors["filter"] = f"root_id/error_group do not combine with {', '.join(roots_filters)}"
    if errors:
        raise ValidationFailed("invalid bulk action: " + "; ".join(errors), errors)
    return action, BulkFilter(**values), dry_run


def _roots_where(f: BulkFilter, exclude: int | None) -> list[peewee.Expression]:
    clauses = queries.roots_where(
        queries.JobFilter(status=f.status, type=f.type, q=f.q, has_failures=f.has_failures)
    )
    if f.ids is not None:
        clauses.append(Job.id.in_(list(f.ids)))
    if exclude is not None:
        clauses.append(Job.id != exclude)
    return clauses


def _group_where(f: BulkFilter) -> list[peewee.Expression]:
    clauses = [Job.error_group == f.error_group, Job.status == "failed"]
    if f.root_id is not None:
        tree = Job.get_or_none(Job.id == f.root_id)
        if tree is None:
            raise NotFound(f"job {f.root_id} not found")
        clauses.append(queries.subtree_below(tree) | (Job.id == tree.id))
    return clauses


def _touched(action: str) -> peewee.Node:
    """SQL for how many jobs of a tree (its top row's counters) `action` touches."""
    own_unfinished = peewee.Case(None, [(Job.status.in_(UNFINISHED), 1)], 0)
    if action == "retry":
        return (
            Job.n_failed
            + Job.n_cancelled
            + peewee.Case(None, [(Job.status.in_(["failed", "cancelled"]), 1)], 0)
        )
    if action == "delete":
        total = Job.n_open + Job.n_completed + Job.n_failed + Job.n_cancelled + 1
        return peewee.Case(None, [(Job.status.in_(UNFINISHED), 0)], total)
    if action == "resume":
        return peewee.Case(None, [(Job.paused, Job.n_open + own_unfinished)], 0)
    return Job.n_open + own_unfinished  # cancel, pause


def count(action: str, f: BulkFilter, exclude: int | None = None) -> dict[str, int]:
    """{"matched": trees, "jobs": jobs touched} of an action, without doing it."""
    if f.error_group is not None:
        jobs = Job.select().where(*_group_where(f)).count()
        trees = Job.select(Job.root_id).where(*_group_where(f)).distinct().count()
        return {"matched": trees, "jobs": jobs}
    where = [Job.id == f.root_id] if f.root_id is not None else _roots_where(f, exclude)
    matched, jobs = (
        Job.select(peewee.fn.COUNT(Job.id), peewee.fn.SUM(_touched(action)))
        .where(*where)
        .tuples()
        .get()
    )
    return {"matched": matched or 0, "jobs": int(jobs or 0)}


def _targets(f: BulkFilter, exclude: int | None) -> Iterator[int]:
    """The ids of the trees to act on, oldest first, read in pages (no list of all)."""
    if f.error_group is not None and f.root_id is not None:
        yield f.root_id
        return
    if f.root_id is not None:
        yield f.root_id
        return
    if f.error_group is not None:
        query = Job.select(Job.root_id).where(*_group_where(f)).distinct()
        yield from sorted(r for (r,) in query.tuples())
        return
    last = 0
    while True:
        page = [
            i
            for (i,) in Job.select(Job.id)
            .where(*_roots_where(f, exclude), Job.id > last)
            .order_by(Job.id)
            .limit(500)
            .tuples()
        ]
        yield from page
        if len(page) < 500:
            return
        last = page[-1]


def _act(manager: JobManager, action: str, job_id: int, error_group: str | None) -> None:
    if action == "retry":
        manager.retry_tree(job_id, error_group=error_group)
    elif action == "cancel":
        manager.cancel_tree(job_id)
    elif action == "delete":
        manager.delete_tree(job_id)
    else:
        manager.set_paused(job_id, action == "pause")


def run(
    manager: JobManager,
    action: str,
    f: BulkFilter,
    exclude: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Do `action` on every tree `f` matches, one transaction each; returns counts of
    trees done and skipped (in the wrong state, or gone meanwhile)."""
    expected = max(1, count(action, f, exclude)["matched"])
    done = skipped = 0
    for job_id in _targets(f, exclude):
        try:
            _act(manager, action, job_id, f.error_group)
            done += 1
        except (Conflict, NotFound):
            skipped += 1
        if progress is not None:
            progress(done + skipped, expected)
    return {"done": done, "skipped": skipped}
