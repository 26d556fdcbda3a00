"""The jobs page: server-rendered roots table that Alpine.js (CSP build) then keeps live."""

from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request

from quaero import queries, schedules
from quaero.errors import ValidationFailed
from quaero.executors.base import public_types
from quaero.models import STATUSES
from quaero.serialize import job_summary_to_dict
from quaero.web import live
from quaero.web.api import job_filter, parse_id, services

bp = Blueprint("pages", __name__)
bp.register_blueprint(live.bp)  # ETag / 304 on the API reads the page polls


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
