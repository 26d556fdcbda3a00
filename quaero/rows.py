"""The roots table's columns, defined once for the jobs page and `quaero jobs`.

A `Column` names a cell (its label, its CSS class) and says its text for a job shaped by
`serialize.job_summary_to_dict`. A `Field` is one value a row shows: the formatter that
prints it here and the jobs.js expression that prints the same in the page's live rows.
`pages/jobs.html` renders the server rows and the Alpine template of the live rows from
one macro over these; the CLI prints the same columns with the same formatters. The
formatters are the twins of the `format` object in `pages/static/jobs.js`:
tests/browser/test_page_rows.py checks that both give the same text.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any


def label(job: dict) -> str:
    """What a job is called: its name, else its URL (listings carry it in `summary`)."""
    summary = job.get("summary") or {}
    payload = job.get("payload") or {}
    return job.get("name") or summary.get("url") or payload.get("url") or "(unnamed)"


def fmt_time(iso: str | None) -> str:
    """An ISO 8601 time to the second, as "2026-01-31 12:00:00"; "—" for none."""
    return iso[:19].replace("T", " ") if iso else "—"


def fmt_duration(seconds: float | None) -> str:
    """ "1.25 s", "12.5 s", "3m 05s", "2h 07m"; "—" when it has not started."""
    if seconds is None:
        return "—"
    if seconds < 10:
        return f"{fixed(seconds, 2)} s"
    if seconds < 60:
        return f"{fixed(seconds, 1)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def fixed(x: float, places: int) -> str:
    """`x` with `places` decimals as JavaScript's toFixed writes it: a tie rounds up
    (Python's format rounds it to even: 1.125 would be "1.12" here, "1.13" there)."""
    return str(Decimal(x).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def pct(job: dict) -> int:
    """The share done, 0..100, rounded as JavaScript's Math.round (a half goes up)."""
    return max(0, min(100, math.floor((job.get("progress") or 0) * 100 + 0.5)))


def pct_text(job: dict) -> str:
    """The share done as "42%"."""
    return f"{pct(job)}%"


def count(job: dict, status: str) -> int:
    """How many descendants of the job have this status ("total": all of them)."""
    return (job.get("counts") or {}).get(status) or 0


def done_text(job: dict) -> str:
    """ "7/9 (1 failed)" of the descendants; a job without any says so, not "0/0"."""
    if not count(job, "total"):
        return "no descendants"
    done = count(job, "completed") + count(job, "failed") + count(job, "cancelled")
    return f"{done}/{count(job, 'total')} ({count(job, 'failed')} failed)"


def with_failed_text(job: dict) -> str:
    """ "with 3 failed" after a completed root's status: a tree's failures show at its top."""
    failed = count(job, "failed")
    return f"with {failed} failed" if job["status"] == "completed" and failed else ""


def status_text(job: dict) -> str:
    """The status cell as it reads: "completed with 3 failed", else the status."""
    return " ".join(filter(None, (job["status"], with_failed_text(job))))


def status_badge_class(job: dict) -> str:
    """The status badge's colour class, marked when the tree holds failures."""
    failed = " has-failures" if count(job, "failed") else ""
    return f"badge-{job['status']}{failed}"


@dataclass(frozen=True)
class Field:
    """One value of a row: `text(job)` prints it here, the jobs.js expression `js` (a
    method call or property path of the `jobsPage` component, for Alpine's CSP build)
    prints the same in the live rows, where the job is `job`. `name` is its attribute's
    name in `Fields` (set when that class is made)."""

    js: str
    text: Callable[[dict], Any]
    name: str = ""

    def __call__(self, job: dict) -> Any:
        return self.text(job)

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "name", name)


class Fields:
    """The values a root's row shows."""

    id = Field("job.id", lambda job: job["id"])
    label = Field("label(job)", label)
    type = Field("job.type", lambda job: job["type"])
    status = Field("job.status", lambda job: job["status"])
    status_badge = Field("statusBadgeClass(job)", status_badge_class)
    with_failed = Field("withFailedText(job)", with_failed_text)
    pct = Field("pct(job)", pct)
    pct_text = Field("pctText(job)", pct_text)
    done = Field("doneText(job)", done_text)
    created_at = Field("job.created_at", lambda job: job["created_at"] or "")
    created = Field("fmtTime(job.created_at)", lambda job: fmt_time(job["created_at"]))
    duration = Field("fmtDuration(job.duration)", lambda job: fmt_duration(job["duration"]))


FIELDS = tuple(f for f in vars(Fields).values() if isinstance(f, Field))
"""Every value a root's row shows."""


def values(job: dict) -> dict[str, Any]:
    """Every value of a job's row by field name: each formatter runs once per row."""
    return {field.name: field.text(job) for field in FIELDS}


@dataclass(frozen=True)
class Column:
    """A column of the roots table: `key` (also its header's class), `label`, the class
    of its cells, its text (a `Field` where one value is the whole cell), and whether it
    is a number (right-aligned in a terminal)."""

    key: str
    label: str
    css: str
    text: Callable[[dict], Any]
    numeric: bool = False


ROOT_COLUMNS = (
    Column("id", "ID", "num", Fields.id, numeric=True),
    Column("name", "Name", "name", label),
    Column("type", "Type", "type", Fields.type),
    Column("status", "Status", "status", status_text),
    Column("progress", "Progress", "progress-cell", done_text),
    Column("created", "Created", "nowrap created", Fields.created),
    Column("duration", "Duration", "nowrap duration", Fields.duration, numeric=True),
)
"""The roots table left to right; the page adds a last cell of actions."""
