"""The OpenAPI 3 description of the JSON API, served at GET /api/openapi.json.

Written by hand as a Python dict next to the code it describes; a test checks that every
API route of the Flask app is here and that nothing here is missing from the app, and a
schemathesis run against a live server checks the answers against it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from quaero.executors.base import public_types
from quaero.models import LOG_LEVELS, STATUSES
from quaero.queries import DESCENDANT_SORTS
from quaero.validation import MAX_DELAY_SECONDS, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH
from quaero.web.api import MAX_ID, MAX_LIMIT
from quaero.web.payload_schemas import payload_property, payload_schemas

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


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


def _errors(*codes: str) -> dict[str, Any]:
    return {code: ERRORS[code] for code in ("401", "403", *codes, "503")}


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "Makes a retried submission safe: a request with a key already used in the last "
        "24 hours creates nothing and answers 200 with the job the first one created (the "
        "same body is required, else 422). At most 200 printable ASCII characters, else 400."
    ),
    "schema": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[ -~]+$"},
}


def _int(minimum: int, maximum: int = MAX_ID, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, **extra}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": _int(0),
    "example": 1,
    "description": "the job's id",
}


def _filters(with_parent: bool) -> list[dict[str, Any]]:
    """The query arguments of a listing (any other is a 400 naming it)."""
    params = [
        _query("status", {"type": "string", "enum": list(STATUSES)}, "only jobs in this status"),
        _query(
            "has_failures",
            {"type": "string", "enum": ["true", "false", "1", "0"]},
            "true: only jobs with failed descendants (a completed root may have some); "
            "false: only jobs without",
        ),
        _query("type", {"type": "string", "maxLength": 64}, "only jobs of this type"),
        _query("q", {"type": "string", "maxLength": 200}, "search in names"),
        _query("limit", _int(1, MAX_LIMIT, default=50), "page size"),
        _query("offset", _int(0, default=0), "jobs to skip"),
    ]
    if with_parent:
        params.insert(0, _query("parent_id", _int(1), "direct children of this job"))
        params.insert(
            1, _query("root_id", _int(1), "every job of this tree, its root included, oldest first")
        )
    return params


def _job_action(summary: str, *codes: str, status: str = "200") -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": [JOB_ID],
        "responses": {status: _json(_ref("Job"), "the job"), **_errors("404", *codes)},
    }


NULLABLE_STRING = {"type": "string", "nullable": True}
NULLABLE_NUMBER = {"type": "number", "nullable": True}
COUNTS = {
    "type": "object",
    "required": [*STATUSES, "total"],
    "properties": {name: {"type": "integer"} for name in (*STATUSES, "total")},
}

JOB_PROPERTIES = {
    "id": {"type": "integer"},
    "parent_id": {"type": "integer", "nullable": True},
    "root_id": {"type": "integer"},
    "depth": {"type": "integer"},
    "type": {"type": "string"},
    "name": {"type": "string"},
    "status": {"type": "string", "enum": list(STATUSES)},
    "paused": {"type": "boolean"},
    "payload": {"type": "object"},
    "result": {"nullable": True},
    "error": NULLABLE_STRING,
    "traceback": NULLABLE_STRING,
    "attempts": {"type": "integer"},
    "max_attempts": {"type": "integer"},
    "priority": {"type": "integer"},
    "timeout": NULLABLE_NUMBER,
    "progress": {"type": "number", "minimum": 0, "maximum": 1},
    "own_progress": {"type": "number", "minimum": 0, "maximum": 1},
    "counts": _ref("Counts"),
    "created_at": {"type": "string", "format": "date-time"},
    "started_at": NULLABLE_STRING,
    "finished_at": NULLABLE_STRING,
    "duration": NULLABLE_NUMBER,
    "worker_id": NULLABLE_STRING,
    "lease_expires_at": NULLABLE_STRING,
    "error_group": {
        **NULLABLE_STRING,
        "description": "the cause of a final failure (GET /api/jobs/{job_id}/failures)",
    },
    "run_after": {
        **NULLABLE_STRING,
        "format": "date-time",
        "description": "a pending job starts no earlier (run_at, delay, a retry's back-off, "
        "a type's limit)",
    },
    "waiting_reason": {
        **NULLABLE_STRING,
        "description": "why a pending job waits: its type's [types.<name>] max_running or rate",
    },
    "on_child_failure": {
        "type": "string",
        "enum": ["ignore", "fail"],
        "description": "ignore: the job completes and counts failed descendants; fail: it "
        "fails once a descendant failed for good, and its unfinished descendants are cancelled",
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "additionalProperties": False,
                "properties": {
                    "code": {"type": "string", "example": "validation_error"},
                    "message": {"type": "string"},
                    "fields": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "each bad field (dotted, e.g. payload.url) → why",
                    },
                },
            }
        },
    },
    "Counts": COUNTS,
    "Job": {
        "type": "object",
        "required": ["id", "root_id", "type", "name", "status", "payload", "counts", "progress"],
        "properties": JOB_PROPERTIES,
    },
    "JobSummary": {
        "description": "a job in a listing: no payload, result or traceback (its details "
        "have them), the error cut to 1000 characters, and a summary",
        "type": "object",
        "required": ["id", "root_id", "type", "name", "status", "summary", "counts", "progress"],
        "properties": {
            **{
                name: schema
                for name, schema in JOB_PROPERTIES.items()
                if name not in ("payload", "result", "traceback")
            },
            "summary": {
                "type": "object",
                "required": ["url", "title"],
                "properties": {
                    "url": {
                        **NULLABLE_STRING,
                        "description": "payload.url, 200 characters at most",
                    },
                    "title": {**NULLABLE_STRING, "description": "result.title, 200 at most"},
                },
            },
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "total", "limit", "offset"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("JobSummary")},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        },
    },
    "LogLine": {
        "type": "object",
        "required": ["id", "job_id", "level", "message", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "job_id": {"type": "integer"},
            "level": {"type": "string", "enum": list(LOG_LEVELS)},
            "message": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Stats": {
        "type": "object",
        "required": ["counts", "queue_depth", "workers_alive"],
        "properties": {
            "counts": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "every job by status",
            },
            "root_counts": {
                "type": "object",
                "additionalProperties": {"type": "integer"},
                "description": "root jobs by status: what GET /api/jobs?status= lists",
            },
            "roots_with_failures": {
                "type": "integer",
                "description": "roots with failed descendants: what has_failures=true lists",
            },
            "queue_depth": {"type": "integer"},
            "scheduled": {"type": "integer"},
            "oldest_pending_age": NULLABLE_NUMBER,
            "workers_alive": {"type": "integer"},
            "workers": {
                "type": "array",
                "description": "live workers (a heartbeat in the last 60 s)",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "hostname": {"type": "string"},
                        "pid": {"type": "integer"},
                        "threads": {"type": "integer"},
                        "running": {"type": "integer"},
                        "running_jobs": {
                            "type": "array",
                            "items": {"type": "integer"},
                            "description": "ids of the jobs it runs (the oldest 200 in all)",
                        },
                        "jobs_done": {"type": "integer"},
                        "started_at": {"type": "number"},
                        "last_heartbeat": {"type": "number"},
                    },
                },
            },
        },
    },
    "FailureGroups": {
        "type": "object",
        "required": ["groups"],
        "properties": {
            "groups": {
                "type": "array",
                "description": "newest group (latest failure) first, 200 groups at most",
                "items": {
                    "type": "object",
                    "required": [
                        "key",
                        "message",
                        "count",
                        "example_job_id",
                        "first_at",
                        "last_at",
                    ],
                    "properties": {
                        "key": {"type": "string", "description": "error_group= of listings"},
                        "message": {
                            "type": "string",
                            "description": "the error with numbers, URLs, ids, quoted values "
                            "and addresses replaced by <n>, <url>, <id>, <str>, <addr>",
                        },
                        "count": {"type": "integer"},
                        "example_job_id": {"type": "integer"},
                        "first_at": NULLABLE_STRING,
                        "last_at": NULLABLE_STRING,
                    },
                },
            }
        },
    },
    "BulkRequest": {
        "type": "object",
        "required": ["action", "filter"],
        "properties": {
            "action": {"type": "string", "enum": ["retry", "cancel", "delete", "pause", "resume"]},
            "filter": {
                "type": "object",
                "description": "roots' filters (status, type, q, has_failures), a tree "
                "(root_id), an error group (error_group, alone or with root_id), or "
                "ids (a list of root ids); at least one",
                "additionalProperties": False,
                "properties": {
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "type": {"type": "string", "maxLength": 64},
                    "q": {"type": "string", "maxLength": 200},
                    "has_failures": {"type": "boolean"},
                    "root_id": _int(1),
                    "error_group": {"type": "string", "maxLength": 64},
                    "ids": {"type": "array", "items": _int(1), "maxItems": 1000},
                },
            },
            "dry_run": {
                "type": "boolean",
                "description": "only count what the action would touch (the page asks first)",
            },
        },
    },
    "BulkResult": {
        "type": "object",
        "required": ["action", "matched", "jobs"],
        "properties": {
            "action": {"type": "string"},
            "matched": {"type": "integer", "description": "roots (or trees) the filter matched"},
            "jobs": {
                "type": "integer",
                "description": "jobs the action touches (an estimate "
                "from the trees' counters when dry_run)",
            },
            "done": {"type": "integer", "description": "trees acted on"},
            "skipped": {"type": "integer", "description": "trees in the wrong state for it"},
            "job_id": {"type": "integer", "description": "202: the bulk job doing it"},
            "dry_run": {"type": "boolean"},
        },
    },
    "Schedule": {
        "type": "object",
        "required": ["name", "cron", "type", "next_run_at", "last_root_id"],
        "properties": {
            "name": {"type": "string"},
            "cron": {
                "type": "string",
                "description": "five-field cron expression, or @every <n>s (every = ...)",
            },
            "type": {"type": "string"},
            "next_run_at": {"type": "string", "format": "date-time"},
            "last_root_id": {"type": "integer", "nullable": True},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "error"]},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
}


def _create_job_schema(demo_types: bool) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type"],
        "additionalProperties": False,
        "properties": {
            "type": {"type": "string", "enum": public_types(demo_types), "description": "executor"},
            "name": {"type": "string", "maxLength": 500},
            "payload": payload_property(
                demo_types,
                f"at most {MAX_PAYLOAD_BYTES} bytes of JSON and {MAX_PAYLOAD_DEPTH} levels deep",
            ),
            "priority": {"type": "integer", "minimum": -100, "maximum": 100, "default": 0},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100, "nullable": True},
            "timeout": {
                "type": "number",
                "exclusiveMinimum": True,
                "minimum": 0,
                "maximum": 86400,
                "nullable": True,
            },
            "run_at": {
                "oneOf": [
                    {"type": "string", "format": "date-time"},
                    {"type": "number", "minimum": 0, "description": "epoch seconds"},
                ],
                "nullable": True,
                "description": "start no earlier than this (ISO 8601 with its zone, or epoch "
                "seconds; at most a year ahead); not with delay",
            },
            "delay": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_DELAY_SECONDS,
                "nullable": True,
                "description": "start no earlier than this many seconds from now; not with run_at",
            },
            "on_child_failure": {
                "type": "string",
                "enum": ["ignore", "fail"],
                "nullable": True,
                "description": "what a descendant's failure means (default ignore; a "
                "payload's on_child_failure is taken when this is not given)",
            },
        },
    }


def document(demo_types: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the API as it is registered in this process."""
    create_body = {
        "required": True,
        "content": {"application/json": {"schema": _create_job_schema(demo_types)}},
    }
    rerun_body = {
        "required": False,
        "description": 'payload keys to override, as {"payload": {...}} or the keys alone',
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
    paths: dict[str, Any] = {
        "/api/jobs": {
            "get": {
                "summary": "Root jobs newest first (or a tree's jobs: parent_id, root_id)",
                "parameters": _filters(with_parent=True),
                "responses": {"200": _json(_ref("JobList"), "a page of jobs"), **_errors("400")},
            },
            "post": {
                "summary": "Submit a job",
                "description": (
                    "The job is stored, then enqueued. While the queue is unavailable the "
                    "job is still stored and answered 201: it is enqueued when the queue "
                    "is back. A 503 means the database is unavailable and the job was not "
                    "stored (unless the connection broke during COMMIT: retry with the same "
                    "Idempotency-Key to be sure)."
                ),
                "parameters": [IDEMPOTENCY_KEY],
                "requestBody": create_body,
                "responses": {
                    "201": _json(_ref("Job"), "the new job (Location: its URL)"),
                    "200": _json(
                        _ref("Job"), "the job an earlier request with this Idempotency-Key created"
                    ),
                    **_errors("400", "409", "413", "415", "422"),
                },
            },
        },
        "/api/jobs/{job_id}": {
            "get": _job_action("A job with its descendant counts and progress"),
            "delete": {
                "summary": "Delete a finished tree and its logs",
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["deleted"],
                            "properties": {"deleted": {"type": "integer"}},
                        },
                        "the number of jobs deleted",
                    ),
                    **_errors("404", "409"),
                },
            },
        },
        "/api/jobs/{job_id}/children": {
            "get": {
                "summary": "Direct children, oldest first",
                "parameters": [JOB_ID, *_filters(with_parent=False)],
                "responses": {
                    "200": _json(_ref("JobList"), "a page of children"),
                    **_errors("400", "404"),
                },
            }
        },
        "/api/jobs/{job_id}/logs": {
            "get": {
                "summary": "A job's log lines; poll with after_id to tail",
                "parameters": [
                    JOB_ID,
                    _query("level", {"type": "string", "enum": list(LOG_LEVELS)}, "minimum"),
                    _query("after_id", _int(0), "only lines after this id"),
                    _query("limit", _int(1, 1000, default=200), "lines at most"),
                    _query(
                        "tree",
                        {"type": "string", "enum": ["true", "false", "1", "0"]},
                        "true: the lines of the job and all its descendants, in time order",
                    ),
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["logs"],
                            "properties": {"logs": {"type": "array", "items": _ref("LogLine")}},
                        },
                        "log lines, oldest first",
                    ),
                    **_errors("400", "404"),
                },
            }
        },
        "/api/jobs/{job_id}/descendants": {
            "get": {
                "summary": "Every descendant of a job (all levels), with filters and sorting",
                "parameters": [
                    JOB_ID,
                    _query("status", {"type": "string", "enum": list(STATUSES)}, "in this status"),
                    _query("type", {"type": "string", "maxLength": 64}, "of this type"),
                    _query("depth", _int(0, 1_000_000), "at this depth (a root is 0)"),
                    _query(
                        "error_group",
                        {"type": "string", "maxLength": 64},
                        "failed with this cause (a key of /failures)",
                    ),
                    _query(
                        "q", {"type": "string", "maxLength": 200}, "in names, payloads and errors"
                    ),
                    _query(
                        "sort",
                        {"type": "string", "enum": list(DESCENDANT_SORTS), "default": "id"},
                        "order; '-' for descending (unfinished jobs last)",
                    ),
                    _query("limit", _int(1, MAX_LIMIT, default=50), "page size"),
                    _query("offset", _int(0, default=0), "jobs to skip"),
                ],
                "responses": {
                    "200": _json(_ref("JobList"), "a page of descendants"),
                    **_errors("400", "404"),
                },
            }
        },
        "/api/jobs/{job_id}/failures": {
            "get": {
                "summary": "The failed jobs of a tree (the job and its descendants) by cause",
                "parameters": [JOB_ID],
                "responses": {
                    "200": _json(_ref("FailureGroups"), "failure groups"),
                    **_errors("400", "404"),
                },
            }
        },
        "/api/failures": {
            "get": {
                "summary": "Failed jobs of every tree by cause",
                "parameters": [
                    _query("type", {"type": "string", "maxLength": 64}, "jobs of this type"),
                    _query(
                        "since",
                        {"type": "string"},
                        "failed at or after: epoch seconds or ISO 8601 (UTC unless it says)",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("FailureGroups"), "failure groups"),
                    **_errors("400"),
                },
            }
        },
        "/api/jobs/{job_id}/export": {
            "get": {
                "summary": "Every descendant, streamed as JSON lines or CSV",
                "parameters": [
                    JOB_ID,
                    _query(
                        "format",
                        {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
                        "jsonl: one job object a line (result decoded); csv: a crawl "
                        "page's url, status_code, title, depth and bytes as columns",
                    ),
                ],
                "responses": {
                    "200": {
                        "description": "the rows, oldest job first (an attachment)",
                        "content": {
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors("400", "404"),
                },
            }
        },
        "/api/jobs/bulk": {
            "post": {
                "summary": "Retry, cancel, delete, pause or resume every job a filter matches",
                "description": (
                    "Small actions run at once (200 with counts); ones touching more than "
                    "[jobs] bulk_inline_jobs jobs run as a `bulk` job of their own, "
                    "answered 202 with its id (its progress and log tell how it goes)."
                ),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BulkRequest")}},
                },
                "responses": {
                    "200": _json(_ref("BulkResult"), "done (or counted, with dry_run)"),
                    "202": _json(_ref("BulkResult"), "started as the job `job_id`"),
                    **_errors("400", "413", "415"),
                },
            }
        },
        "/api/jobs/{job_id}/cancel": {
            "post": _job_action(
                "Cancel the job and every unfinished descendant", "409", "413", "415"
            )
        },
        "/api/jobs/{job_id}/retry": {
            "post": _job_action(
                "Re-run the failed and cancelled jobs of the tree", "409", "413", "415"
            )
        },
        "/api/jobs/{job_id}/pause": {
            "post": _job_action("Hold back the pending jobs of the tree", "409", "413", "415")
        },
        "/api/jobs/{job_id}/resume": {
            "post": _job_action("Release the held-back jobs of the tree", "409", "413", "415")
        },
        "/api/jobs/{job_id}/rerun": {
            "post": {
                **_job_action("A new root with the same type and payload"),
                "requestBody": rerun_body,
                "responses": {
                    "201": _json(_ref("Job"), "the new root"),
                    **_errors("400", "404", "409", "413", "415"),
                },
            }
        },
        "/api/stats": {
            "get": {
                "summary": "Counts by status, queue depth, retries, live workers",
                "responses": {"200": _json(_ref("Stats"), "statistics"), **_errors()},
            }
        },
        "/api/schedules": {
            "get": {
                "summary": "The [[schedules]] of config.toml, their next run and last root",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["schedules"],
                            "properties": {
                                "schedules": {"type": "array", "items": _ref("Schedule")}
                            },
                        },
                        "schedules",
                    ),
                    **_errors(),
                },
            }
        },
        "/api/types": {
            "get": {
                "summary": "The job types that can be submitted",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["types"],
                            "properties": {"types": {"type": "array", "items": {"type": "string"}}},
                        },
                        "type names",
                    ),
                    **_errors(),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0"), **_errors()},
            }
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
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(),
                },
            }
        },
    }
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
            "schemas": {**SCHEMAS, **payload_schemas(demo_types)},
        },
        "paths": paths,
    }


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(document(current_app.extensions["quaero"].config.jobs.demo_types))
