"""The jobs page: server-rendered roots table that Alpine.js (CSP build) then keeps live."""

from __future__ import annotations

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


# How `root_row` in jobs.html writes one markup two ways. With a job (a dict), a value is
# printed; without one (None), the element is bound to the field's jobs.js expression,
# for the x-for template of the live rows. Python, not Jinja macros, and f-strings of
# escape(), not Markup's `%` (twice as slow): they run ~15 times a row on every /jobs.
# `name` is always a literal of jobs.html.


def bind(job: dict | None, name: str, field: rows.Field, value: Any = None) -> Markup:
    """An attribute: ` name="value"` (the field's, or `value`), or ` :name="js"`."""
    if job is None:
        return Markup(f' :{name}="{escape(field.js)}"')
    return Markup(f' {name}="{escape(field(job) if value is None else value)}"')


def text(job: dict | None, field: rows.Field) -> Markup:
    """The end of a start tag and the element's text: `>text`, or ` x-text="js">`."""
    if job is None:
        return Markup(f' x-text="{escape(field.js)}">')
    return Markup(f">{escape(field(job))}")


def live(job: dict | None, attributes: str) -> Markup:
    """Attributes only the live row has (bindings, handlers): a literal of jobs.html."""
    return Markup(" " + attributes) if job is None else Markup("")


# A row's Details link: jobs.js builds it from the filters it holds; the server row is
# handed it (`root_row`'s `base_qs`).
JOB_HREF = rows.Field("jobHref(job.id)", lambda job: None)


@bp.app_context_processor
def row_helpers() -> dict[str, Any]:
    """What jobs.html needs to render rows: the columns, fields and helpers above."""
    return {
        "columns": rows.ROOT_COLUMNS,
        "fields": rows.Fields,
        "job_href": JOB_HREF,
        "fmt_time": rows.fmt_time,
        "bind": bind,
        "text": text,
        "live": live,
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
    jobs, total = queries.list_jobs(f)
    stats = queries.stats(services().queue)
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
        stats={
            k: stats[k]
            for k in (
                "root_counts",
                "roots_with_failures",
                "queue_depth",
                "workers_alive",
                "workers",
            )
        },
        open_job=parse_id(open_job),
        read_only=services().config.server.read_only,
        schedules=schedules.schedules_to_dicts(services().manager),
    )
