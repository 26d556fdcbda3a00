"""The jobs page: server-rendered roots table that Alpine.js (CSP build) then keeps live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, redirect, render_template, request
from markupsafe import Markup, escape

from quaero import queries, rows, schedules
from quaero.errors import ValidationFailed
from quaero.executors.base import public_types
from quaero.models import STATUSES
from quaero.serialize import job_summary_to_dict
from quaero.web import live
from quaero.web.api import job_filter, parse_id, services

bp = Blueprint("pages", __name__)
bp.register_blueprint(live.bp)  # ETag / 304 on the API reads the page polls


# How `root_row` in jobs.html writes one markup two ways: from a `RowView`, whose values
# the template prints as they are (no calls: the macro runs for each of 50 rows on every
# /jobs). A job's row prints the fields' texts; the x-for template of the live rows binds
# each element to the field's jobs.js expression instead.


class Values:
    """Values by field name, read as `v.label` (or `v[name]`) in jobs.html."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]


# A row's Details link: jobs.js builds it from the filters it holds; a job's row is
# handed its page's query string (`server_rows`'s `base_qs`).
JOB_HREF = rows.Field("jobHref(job.id)", lambda job: None, name="href")


@dataclass(frozen=True, slots=True)
class RowView:
    """One row as `root_row` prints it. `attr.<field>` is an attribute's value,
    `text.<field>` an element's text, `x_text.<field>` the attribute that binds that text
    and `bind` goes before a bound attribute's name. A job's row: the field's text, the
    same, "" and "". The live row: the jobs.js expression, "", ` x-text="expression"` and
    ":". `live`: the live row, whose literal bindings and handlers the macro adds."""

    live: bool
    bind: str
    attr: Values
    text: Values
    x_text: Values


NO_X_TEXT = Values({field.name: "" for field in rows.FIELDS})
LIVE_ROW = RowView(
    live=True,
    bind=":",
    attr=Values({field.name: field.js for field in (*rows.FIELDS, JOB_HREF)}),
    text=Values({field.name: "" for field in rows.FIELDS}),
    x_text=Values({field.name: Markup(f' x-text="{escape(field.js)}"') for field in rows.FIELDS}),
)


def server_rows(jobs: list[dict], base_qs: Markup) -> list[RowView]:
    """The rows of these jobs, complete without JavaScript; `base_qs`: the page's query
    string (markup from jobs.html's `qs`), for the Details links."""
    views = []
    prefix = Markup("?") + base_qs + "&job=" if base_qs else Markup("?job=")
    for job in jobs:
        values = Values({**rows.values(job), "href": prefix + str(job["id"])})
        views.append(RowView(False, "", values, values, NO_X_TEXT))
    return views


@bp.app_context_processor
def row_helpers() -> dict[str, Any]:
    """What jobs.html needs to render rows: the columns, the rows' views, a formatter."""
    return {
        "columns": rows.ROOT_COLUMNS,
        "server_rows": server_rows,
        "live_row": LIVE_ROW,
        "fmt_time": rows.fmt_time,
    }


@bp.get("/")
def index():
    return redirect("/jobs")


@bp.get("/jobs")
def jobs_page():
    try:
        f = job_filter()
    except ValidationFailed:
        f = queries.JobFilter()  # a hand-edited URL falls back to the default view
    stats = queries.root_stats(services().queue)
    jobs, total = queries.list_jobs(f, queries.known_roots_total(f, stats))
    open_job = request.args.get("job") or None
    if open_job is not None and parse_id(open_job) is None:
        abort(400, "job must be a job id (digits)")
    return render_template(
        "jobs.html",
        jobs=[job_summary_to_dict(j) for j in jobs],
        total=total,
        filters={
            "status": f.status or "",
            "type": f.type or "",
            "q": f.q or "",
            "has_failures": "true" if f.has_failures else "",
            "limit": f.limit,
            "offset": f.offset,
        },
        statuses=STATUSES,
        types=public_types(services().config.jobs.demo_types),
        stats=stats,
        open_job=parse_id(open_job),
        read_only=services().config.server.read_only,
        schedules=schedules.schedules_to_dicts(services().manager),
    )
