"""The OpenAPI 3 description of the JSON API, served at GET /api/openapi.json.

The schemas are generated from the pydantic models that validate the requests
(`quaero.validation.CreateJob`, `quaero.bulk.BulkRequest`, each type's `Payload`) and
that describe the answers (quaero/web/schemas.py), so a limit is written once, where it
is checked. The operations are a table here; the query arguments' limits are the
constants quaero/web/api.py checks them with. A test checks that every API route of the
Flask app is here and nothing else, and a schemathesis run against a live server checks
the answers against the document.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from quaero.bulk import BulkRequest
from quaero.executors.base import public_types
from quaero.idempotency import HEADER, MAX_KEY_CHARS
from quaero.models import LOG_LEVELS, MAX_ID, STATUSES
from quaero.queries import DESCENDANT_SORTS
from quaero.validation import CreateJob
from quaero.web import api, schemas
from quaero.web.payload_schemas import PREFIX, payload_property, payload_schemas, to_openapi30

bp = Blueprint("openapi", __name__)


def _plain(schema: Any) -> Any:
    """A generated schema without pydantic's titles and `default: null` (a key that is
    left out is not a null)."""
    if isinstance(schema, list):
        return [_plain(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "properties":
            out[key] = {name: _plain(sub) for name, sub in value.items()}
        else:
            out[key] = _plain(value)
    return out


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """`components.schemas` entries of `models` and of the models they refer to, in
    OpenAPI 3.0's dialect; `ErrorDetail` is inlined in `Error` (one error shape)."""
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template=PREFIX + "{model}"
    )
    found = {name: _plain(to_openapi30(schema)) for name, schema in top["$defs"].items()}
    if "Error" in found:
        found["Error"]["properties"]["error"] = found.pop("ErrorDetail")
    return found


def _ref(name: str) -> dict[str, str]:
    return {"$ref": PREFIX + name}


def _schema(schema: str | dict[str, Any]) -> dict[str, Any]:
    return _ref(schema) if isinstance(schema, str) else schema


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


ERRORS = {
    "400": _error("invalid JSON, fields or query arguments; `fields` names each bad one"),
    "401": _error("missing or wrong `Authorization: Bearer` token (when a token is set)"),
    "403": _error("read-only mode, a cross-site request, or a non-loopback Host without token"),
    "404": _error("no such job (ids that are not integers included)"),
    "405": _error("method not allowed"),
    "409": _error("the job is in the wrong state for this"),
    "413": _error("the body is larger than [server] max_body_bytes"),
    "415": _error("the body is not JSON"),
    "422": _error("the Idempotency-Key was used for a different request body"),
    "503": {
        **_error(
            "the metadata database or the queue is unavailable (code `unavailable`, the "
            "message says which); nothing was changed unless stated; retry after Retry-After"
        ),
        "headers": {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        },
    },
}


def _op(
    summary: str,
    answers: dict[str, tuple[str | dict[str, Any], str] | dict[str, Any]],
    errors: tuple[str, ...] = (),
    parameters: list[dict[str, Any]] | None = None,
    **more: Any,
) -> dict[str, Any]:
    """One operation: `answers` maps a status to (a component name or a JSON schema, what
    it means), or to a response; the 401, 403 and 503 any operation may answer come with
    `errors`."""
    responses = {
        status: answer if isinstance(answer, dict) else _json(_schema(answer[0]), answer[1])
        for status, answer in answers.items()
    }
    responses.update({code: ERRORS[code] for code in ("401", "403", *errors, "503")})
    return {
        "summary": summary,
        **({"parameters": parameters} if parameters else {}),
        **more,
        "responses": responses,
    }


def _int(minimum: int, maximum: int = MAX_ID, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}


def _text(max_chars: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_chars}


def _enum(choices: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "enum": list(choices), **extra}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


BOOLEAN = _enum(["true", "false", "1", "0"])
JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": _int(0),
    "example": 1,
    "description": "the job's id",
}
IDEMPOTENCY_KEY = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": (
        "Makes a retried submission safe: a request with a key already used in the last "
        "24 hours creates nothing and answers 200 with the job the first one created (the "
        f"same body is required, else 422). At most {MAX_KEY_CHARS} printable ASCII "
        "characters, else 400."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS, "pattern": "^[ -~]+$"},
}
PAGE = [
    _query("limit", _int(1, api.MAX_LIMIT, default=50), "page size"),
    _query("offset", _int(0, default=0), "jobs to skip"),
]
LISTING = [
    _query("status", _enum(STATUSES), "only jobs in this status"),
    _query(
        "has_failures",
        BOOLEAN,
        "true: only jobs with failed descendants (a completed root may have some); "
        "false: only jobs without",
    ),
    _query("type", _text(api.MAX_NAME_CHARS), "only jobs of this type"),
    _query("q", _text(api.MAX_SEARCH_CHARS), "search in names"),
    *PAGE,
]
DESCENDANTS = [
    JOB_ID,
    _query("status", _enum(STATUSES), "in this status"),
    _query("type", _text(api.MAX_NAME_CHARS), "of this type"),
    _query("depth", _int(0, api.MAX_DEPTH), "at this depth (a root is 0)"),
    _query("error_group", _text(api.MAX_NAME_CHARS), "failed with this cause (a key of /failures)"),
    _query("q", _text(api.MAX_SEARCH_CHARS), "in names, payloads and errors"),
    _query(
        "sort",
        _enum(DESCENDANT_SORTS, default="id"),
        "order; '-' for descending (unfinished jobs last)",
    ),
    *PAGE,
]
LOGS = [
    JOB_ID,
    _query("level", _enum(LOG_LEVELS), "minimum"),
    _query("after_id", _int(0), "only lines after this id"),
    _query("limit", _int(1, api.MAX_LOG_LINES, default=200), "lines at most"),
    _query("tree", BOOLEAN, "true: the lines of the job and all its descendants, in time order"),
]
STATE_ERRORS = ("404", "409", "413", "415")
SUBMIT = (
    "The job is stored, then enqueued. While the queue is unavailable the job is still "
    "stored and answered 201: it is enqueued when the queue is back. A 503 means the "
    "database is unavailable and the job was not stored (unless the connection broke "
    "during COMMIT: retry with the same Idempotency-Key to be sure)."
)
BULK = (
    "Small actions run at once (200 with counts); ones touching more than [jobs] "
    "bulk_inline_jobs jobs run as a `bulk` job of their own, answered 202 with its id "
    "(its progress and log tell how it goes)."
)


def _text_answer(description: str, *media_types: str) -> dict[str, Any]:
    content = {media_type: {"schema": {"type": "string"}} for media_type in media_types}
    return {"description": description, "content": content}


EXPORT_ROWS = _text_answer(
    "the rows, oldest job first (an attachment)", "application/x-ndjson", "text/csv"
)
METRICS_TEXT = _text_answer("Prometheus text format", "text/plain")
RERUN_BODY = {
    "required": False,
    "description": 'payload keys to override, as {"payload": {...}} or the keys alone',
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _job_action(summary: str, *errors: str) -> dict[str, Any]:
    return _op(summary, {"200": ("Job", "the job")}, ("404", *errors), [JOB_ID])


def _create_job_schema(demo_types: bool) -> dict[str, Any]:
    """CreateJob's schema with the types this process accepts and their payloads."""
    schema = model_schemas(CreateJob)[CreateJob.__name__]
    properties = schema["properties"]
    properties["type"]["enum"] = public_types(demo_types)
    properties["payload"] = payload_property(demo_types, properties["payload"]["description"])
    return schema


def paths(demo_types: bool) -> dict[str, Any]:
    """Every operation of the API, by path and method."""
    job = "/api/jobs/{job_id}"
    return {
        "/api/jobs": {
            "get": _op(
                "Root jobs newest first (or a tree's jobs: parent_id, root_id)",
                {"200": ("JobList", "a page of jobs")},
                ("400",),
                [
                    _query("parent_id", _int(1), "direct children of this job"),
                    _query(
                        "root_id",
                        _int(1),
                        "every job of this tree, its root included, oldest first",
                    ),
                    *LISTING,
                ],
            ),
            "post": _op(
                "Submit a job",
                {
                    "201": ("Job", "the new job (Location: its URL)"),
                    "200": ("Job", "the job an earlier request with this Idempotency-Key created"),
                },
                ("400", "409", "413", "415", "422"),
                [IDEMPOTENCY_KEY],
                description=SUBMIT,
                requestBody=_body(_create_job_schema(demo_types)),
            ),
        },
        job: {
            "get": _job_action("A job with its descendant counts and progress"),
            "delete": _op(
                "Delete a finished tree and its logs",
                {"200": ("Deleted", "the number of jobs deleted")},
                ("404", "409"),
                [JOB_ID],
            ),
        },
        job + "/children": {
            "get": _op(
                "Direct children, oldest first",
                {"200": ("JobList", "a page of children")},
                ("400", "404"),
                [JOB_ID, *LISTING],
            )
        },
        job + "/logs": {
            "get": _op(
                "A job's log lines; poll with after_id to tail",
                {"200": ("LogLines", "log lines, oldest first")},
                ("400", "404"),
                LOGS,
            )
        },
        job + "/descendants": {
            "get": _op(
                "Every descendant of a job (all levels), with filters and sorting",
                {"200": ("JobList", "a page of descendants")},
                ("400", "404"),
                DESCENDANTS,
            )
        },
        job + "/failures": {
            "get": _op(
                "The failed jobs of a tree (the job and its descendants) by cause",
                {"200": ("FailureGroups", "failure groups")},
                ("400", "404"),
                [JOB_ID],
            )
        },
        "/api/failures": {
            "get": _op(
                "Failed jobs of every tree by cause",
                {"200": ("FailureGroups", "failure groups")},
                ("400",),
                [
                    _query("type", _text(api.MAX_NAME_CHARS), "jobs of this type"),
                    _query(
                        "since",
                        {"type": "string"},
                        "failed at or after: epoch seconds or ISO 8601 (UTC unless it says)",
                    ),
                ],
            )
        },
        job + "/export": {
            "get": _op(
                "Every descendant, streamed as JSON lines or CSV",
                {"200": EXPORT_ROWS},
                ("400", "404"),
                [
                    JOB_ID,
                    _query(
                        "format",
                        _enum(["jsonl", "csv"], default="jsonl"),
                        "jsonl: one job object a line (result decoded); csv: a crawl "
                        "page's url, status_code, title, depth and bytes as columns",
                    ),
                ],
            )
        },
        "/api/jobs/bulk": {
            "post": _op(
                "Retry, cancel, delete, pause or resume every job a filter matches",
                {
                    "200": ("BulkResult", "done (or counted, with dry_run)"),
                    "202": ("BulkResult", "started as the job `job_id`"),
                },
                ("400", "413", "415"),
                description=BULK,
                requestBody=_body(_ref("BulkRequest")),
            )
        },
        job + "/cancel": {
            "post": _job_action("Cancel the job and every unfinished descendant", *STATE_ERRORS)
        },
        job + "/retry": {
            "post": _job_action("Re-run the failed and cancelled jobs of the tree", *STATE_ERRORS)
        },
        job + "/pause": {
            "post": _job_action("Hold back the pending jobs of the tree", *STATE_ERRORS)
        },
        job + "/resume": {
            "post": _job_action("Release the held-back jobs of the tree", *STATE_ERRORS)
        },
        job + "/rerun": {
            "post": _op(
                "A new root with the same type and payload",
                {"201": ("Job", "the new root")},
                ("400", *STATE_ERRORS),
                [JOB_ID],
                requestBody=RERUN_BODY,
            )
        },
        "/api/stats": {
            "get": _op(
                "Counts by status, queue depth, retries, live workers",
                {"200": ("Stats", "statistics")},
            )
        },
        "/api/schedules": {
            "get": _op(
                "The [[schedules]] of config.toml, their next run and last root",
                {"200": ("Schedules", "schedules")},
            )
        },
        "/api/types": {
            "get": _op("The job types that can be submitted", {"200": ("Types", "type names")})
        },
        "/api/openapi.json": {
            "get": _op("This document", {"200": ({"type": "object"}, "OpenAPI 3.0")})
        },
        "/healthz": {
            "get": {
                "summary": "Web, metadata store and queue health (no token needed)",
                "security": [],
                "responses": {
                    "200": _json(_ref("Health"), "healthy"),
                    "503": _json(_ref("Health"), "a check failed"),
                    "403": ERRORS["403"],
                },
            }
        },
        "/metrics": {"get": _op("Prometheus metrics", {"200": METRICS_TEXT})},
    }


def document(demo_types: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API as it is registered in this process."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "quaero",
            "version": "1",
            "description": (
                "Parent/child job orchestrator. Every error is JSON: "
                '{"error": {"code", "message", "fields"?}}. With [server] api_token set, '
                "every path but /healthz needs `Authorization: Bearer <token>`."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **model_schemas(*schemas.RESPONSES, BulkRequest),
                **payload_schemas(demo_types),
            },
        },
        "paths": paths(demo_types),
    }


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(document(current_app.extensions["quaero"].config.jobs.demo_types))
