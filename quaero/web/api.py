"""The JSON API under /api, plus /healthz and /metrics."""

from __future__ import annotations

import datetime as dt
import logging
import re
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from werkzeug import exceptions as werkzeug_exceptions
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.routing import BaseConverter

from quaero import bulk, export, idempotency, queries, schedules
from quaero.errors import NotFound, ValidationFailed
from quaero.executors.base import public_types
from quaero.metrics import CONTENT_TYPE, render_metrics
from quaero.models import LOG_LEVELS, MAX_ID, STATUSES
from quaero.serialize import job_summary_to_dict, job_to_dict, log_to_dict
from quaero.services import Services
from quaero.validation import job_name, validate_create

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

MAX_LIMIT = 500
MAX_LOG_LINES = 1000  # lines of a log page
MAX_DEPTH = 1_000_000  # the depth filter of descendants
MAX_NAME_CHARS = 64  # a type or error group a listing filters on (longer ones are cut)
MAX_SEARCH_CHARS = 200  # a listing's `q`
JOB = "/api/jobs/<job_id:job_id>"


DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: int() also takes "٣", " 3" and "1_0"
INTEGER = re.compile(r"-?[0-9]{1,19}")


def parse_id(text: str | None) -> int | None:
    """An id (ASCII digits within 64 bits), or None for anything else."""
    if text is None or not DIGITS.fullmatch(text):
        return None
    number = int(text)
    return number if number <= MAX_ID else None


class JobIdConverter(BaseConverter):
    """A job id in a URL: ASCII digits within 64 bits. Anything else (`abc`, `٣`, 4,301
    digits) is the same JSON 404 as a missing id, whatever the method."""

    regex = r"[^/]+"

    def to_python(self, value: str) -> int:
        number = parse_id(value)
        if number is None:
            raise werkzeug_exceptions.NotFound(f"job {value[:40]} not found")
        return number

    def to_url(self, value: int) -> str:
        return str(int(value))


bp.record_once(lambda state: state.app.url_map.converters.setdefault("job_id", JobIdConverter))


def services() -> Services:
    """The services of the running app."""
    return current_app.extensions["quaero"]


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 415/400 error."""
    if not request.is_json:
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # json.loads on thousands of nested brackets
        raise ValidationFailed(
            "the body is nested too deeply", {"body": "nested too deeply"}
        ) from None
    if data is None:
        raise ValidationFailed("the body is not valid JSON")
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object")
    return data


def int_arg(name: str, default: int | None, minimum: int = 0, maximum: int = MAX_ID) -> int | None:
    """An integer query argument, or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not INTEGER.fullmatch(raw):
        raise ValidationFailed(f"{name} must be an integer", {name: "must be an integer"})
    value = int(raw)
    if value < minimum or value > maximum:
        bounds = f"between {minimum} and {maximum}" if maximum < MAX_ID else f">= {minimum}"
        raise ValidationFailed(f"{name} must be {bounds}", {name: f"must be {bounds}"})
    return value


def choice_arg(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """A query argument restricted to `choices`, or a 400 naming it."""
    value = request.args.get(name) or None
    if value is not None and value not in choices:
        raise ValidationFailed(
            f"{name} must be one of {', '.join(choices)}", {name: f"one of {', '.join(choices)}"}
        )
    return value


def text_arg(name: str, max_chars: int) -> str | None:
    """A free-text query argument, trimmed and cut to `max_chars`; NUL is a 400."""
    value = (request.args.get(name) or "").strip()[:max_chars]
    if "\x00" in value:
        raise ValidationFailed(f"{name} must not contain NUL", {name: "must not contain NUL"})
    return value or None


def bool_arg(name: str) -> bool | None:
    """A true/false query argument (also 1/0), or a 400 naming it."""
    raw = (request.args.get(name) or "").lower()
    if raw == "":
        return None
    if raw in ("true", "1"):
        return True
    if raw in ("false", "0"):
        return False
    raise ValidationFailed(f"{name} must be true or false", {name: "must be true or false"})


# The query arguments each listing takes: anything else is a 400 naming it, so a typo
# (or a filter this version lacks) never silently lists everything.
LISTING_ARGS = ("status", "type", "q", "has_failures", "limit", "offset")
JOBS_ARGS = ("parent_id", "root_id", *LISTING_ARGS)
LOGS_ARGS = ("level", "after_id", "limit", "tree")
DESCENDANTS_ARGS = ("status", "type", "depth", "error_group", "q", "sort", "limit", "offset")
FAILURES_ARGS = ("type", "since")
EXPORT_ARGS = ("format",)


def reject_unknown_args(allowed: tuple[str, ...]) -> None:
    """A 400 naming the query arguments that are not in `allowed`."""
    unknown = sorted(set(request.args) - set(allowed))
    if unknown:
        raise ValidationFailed(
            f"unknown filter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(known: {', '.join(allowed)})",
            dict.fromkeys(unknown, "unknown filter"),
        )


def job_filter(parent_id: int | None = None) -> queries.JobFilter:
    """The listing filters from the query string."""
    return queries.JobFilter(
        parent_id=parent_id if parent_id is not None else int_arg("parent_id", None, 1),
        root_id=None if parent_id is not None else int_arg("root_id", None, 1),
        has_failures=bool_arg("has_failures"),
        status=choice_arg("status", STATUSES),
        type=text_arg("type", MAX_NAME_CHARS),
        q=text_arg("q", MAX_SEARCH_CHARS),
        limit=int_arg("limit", 50, 1, MAX_LIMIT),
        offset=int_arg("offset", 0, 0),
    )


def listing(f: queries.JobFilter) -> dict[str, Any]:
    """The body of a job listing."""
    jobs, total = queries.list_jobs(f)
    return {
        "jobs": [job_summary_to_dict(j) for j in jobs],
        "total": total,
        "limit": f.limit,
        "offset": f.offset,
    }


@bp.get("/api/jobs")
def list_jobs():
    reject_unknown_args(JOBS_ARGS)
    return jsonify(listing(job_filter()))


@bp.post("/api/jobs")
def create_job():
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    body = validate_create(json_body(), demo_types=services().config.jobs.demo_types)
    name = job_name(body)
    manager = services().manager

    run_after = body.run_after(time.time())
    # the crawler (or any executor) may take the policy in its payload, too
    on_child_failure = body.on_child_failure or body.payload.get("on_child_failure") or "ignore"

    def create(in_transaction=None):
        return manager.create_root(
            body.type,
            body.payload,
            name=name,
            priority=body.priority,
            max_attempts=body.max_attempts,
            timeout=body.timeout,
            in_transaction=in_transaction,
            run_after=run_after,
            on_child_failure=on_child_failure,
        )

    created = True
    if key is None:
        job = create()
    else:
        digest = idempotency.fingerprint(body.model_dump(mode="json"))
        job, created = idempotency.create_once(services().db, key, digest, create)
    response = jsonify(job_to_dict(job))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return response


def _job_or_404(job_id: int):
    job = queries.get_job(job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    return job


@bp.get(JOB)
def get_job(job_id: int):
    return jsonify(job_to_dict(_job_or_404(job_id)))


@bp.get(JOB + "/children")
def children(job_id: int):
    _job_or_404(job_id)
    reject_unknown_args(LISTING_ARGS)
    return jsonify(listing(job_filter(parent_id=job_id)))


@bp.get(JOB + "/logs")
def logs(job_id: int):
    job = _job_or_404(job_id)
    reject_unknown_args(LOGS_ARGS)
    level = choice_arg("level", LOG_LEVELS)
    after_id = int_arg("after_id", None, 0)
    limit = int_arg("limit", 200, 1, MAX_LOG_LINES)
    if bool_arg("tree"):
        lines = queries.tree_logs(job, level=level, after_id=after_id, limit=limit)
    else:
        lines = queries.job_logs(job_id, level=level, after_id=after_id, limit=limit)
    return jsonify({"logs": [log_to_dict(line) for line in lines]})


@bp.get(JOB + "/descendants")
def descendants(job_id: int):
    job = _job_or_404(job_id)
    reject_unknown_args(DESCENDANTS_ARGS)
    f = queries.DescendantFilter(
        status=choice_arg("status", STATUSES),
        type=text_arg("type", MAX_NAME_CHARS),
        depth=int_arg("depth", None, 0, MAX_DEPTH),
        error_group=text_arg("error_group", MAX_NAME_CHARS),
        q=text_arg("q", MAX_SEARCH_CHARS),
        sort=choice_arg("sort", queries.DESCENDANT_SORTS) or "id",
        limit=int_arg("limit", 50, 1, MAX_LIMIT),
        offset=int_arg("offset", 0, 0),
    )
    jobs, total = queries.list_descendants(job, f)
    return jsonify(
        {
            "jobs": [job_summary_to_dict(j) for j in jobs],
            "total": total,
            "limit": f.limit,
            "offset": f.offset,
        }
    )


@bp.get(JOB + "/failures")
def tree_failures(job_id: int):
    job = _job_or_404(job_id)
    reject_unknown_args(())
    return jsonify({"groups": queries.tree_failures(job)})


def time_arg(name: str) -> float | None:
    """A point in time: epoch seconds or ISO 8601 (UTC unless it says), or a 400."""
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        message = "must be epoch seconds or an ISO 8601 time"
        raise ValidationFailed(f"{name} {message}", {name: message}) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@bp.get("/api/failures")
def failures():
    reject_unknown_args(FAILURES_ARGS)
    groups = queries.failures(type=text_arg("type", MAX_NAME_CHARS), since=time_arg("since"))
    return jsonify({"groups": groups})


@bp.get(JOB + "/export")
def export_tree(job_id: int):
    job = _job_or_404(job_id)
    reject_unknown_args(EXPORT_ARGS)
    fmt = choice_arg("format", tuple(export.FORMATS)) or "jsonl"
    response = Response(
        stream_with_context(export.stream(job, fmt)), content_type=export.FORMATS[fmt]
    )
    response.headers["Content-Disposition"] = f'attachment; filename="job-{job.id}.{fmt}"'
    return response


@bp.post(JOB + "/cancel")
def cancel(job_id: int):
    return jsonify(job_to_dict(services().manager.cancel_tree(job_id)))


@bp.post(JOB + "/retry")
def retry(job_id: int):
    return jsonify(job_to_dict(services().manager.retry_tree(job_id)))


@bp.post(JOB + "/rerun")
def rerun(job_id: int):
    overrides: dict[str, Any] = {}
    if request.content_length:
        body = json_body()
        overrides = body.get("payload", body)
        if not isinstance(overrides, dict):
            raise ValidationFailed("payload overrides must be an object", {"payload": "object"})
    original = _job_or_404(job_id)
    spec = validate_create(
        {"type": original.type, "payload": {**original.payload_data, **overrides}},
        demo_types=services().config.jobs.demo_types,
    )
    job = services().manager.rerun(job_id, spec.payload)
    response = jsonify(job_to_dict(job))
    response.status_code = 201
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return response


@bp.post(JOB + "/pause")
def pause(job_id: int):
    return jsonify(job_to_dict(services().manager.set_paused(job_id, True)))


@bp.post(JOB + "/resume")
def resume(job_id: int):
    return jsonify(job_to_dict(services().manager.set_paused(job_id, False)))


@bp.delete(JOB)
def delete(job_id: int):
    deleted = services().manager.delete_tree(job_id)
    return jsonify({"deleted": deleted})


@bp.post("/api/jobs/bulk")
def bulk_action():
    action, f, dry_run = bulk.parse(json_body())
    counts = {"action": action, **bulk.count(action, f)}
    if dry_run:
        return jsonify({**counts, "dry_run": True})
    if counts["jobs"] <= services().config.jobs.bulk_inline_jobs:
        return jsonify({**counts, **bulk.run(services().manager, action, f)})
    # large: a job of its own, with progress, that a restart does not lose
    job = services().manager.create_root(
        "bulk",
        {"action": action, "filter": f.as_json(), "expected": counts},
        name=f"bulk {action}: {counts['jobs']} jobs in {counts['matched']} trees",
        max_attempts=1,
    )
    response = jsonify({**counts, "job_id": job.id})
    response.status_code = 202
    response.headers["Location"] = f"/api/jobs/{job.id}"
    return response


@bp.get("/api/stats")
def stats():
    return jsonify(queries.stats(services().queue))


@bp.get("/api/types")
def types():
    return jsonify({"types": public_types(services().config.jobs.demo_types)})


@bp.get("/api/schedules")
def list_schedules():
    return jsonify({"schedules": schedules.schedules_to_dicts(services().manager)})


@bp.get("/healthz")
def healthz():
    checks: dict[str, str] = {"web": "ok"}
    status = 200
    try:
        services().db.execute_sql("SELECT 1").fetchone()
        checks["database"] = "ok"
    except Exception as exc:
        logger.warning("health: database: %s", exc)
        checks["database"], status = f"error: {type(exc).__name__}", 503
    failing = services().store.check_writes() or services().queue.check_writes()
    if failing:
        checks["writes"], status = f"error: {failing}"[:200], 503
    try:
        services().queue.ping()
        checks["queue"] = "ok"
    except Exception as exc:
        logger.warning("health: queue: %s", exc)
        checks["queue"], status = f"error: {type(exc).__name__}", 503
    return jsonify({"status": "ok" if status == 200 else "error", "checks": checks}), status


@bp.get("/metrics")
def metrics():
    return Response(render_metrics(services().queue), content_type=CONTENT_TYPE)
