"""The one place that builds error bodies: `{"error": {"code", "message", "fields"?}}`."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from quaero.db import UNAVAILABLE_ERRORS
from quaero.errors import QuaeroError, Unavailable

logger = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}
RETRY_AFTER_SECONDS = 2  # what a 503 tells clients to wait before trying again


def error_response(
    status: int, code: str, message: str, fields: dict[str, str] | None = None
) -> Response:
    """A JSON error response in the API's one shape."""
    body: dict = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    response = jsonify({"error": body})
    response.status_code = status
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/metrics")


def register_error_handlers(app: Flask) -> None:
    """JSON errors for the API; plain pages keep Flask's HTML errors."""

    @app.errorhandler(QuaeroError)
    def quaero_error(exc: QuaeroError):
        if isinstance(exc, Unavailable):
            return unavailable(exc.message)
        return error_response(exc.status, exc.code, exc.message, exc.fields)

    def unavailable(message: str):
        logger.warning("503 on %s %s: %s", request.method, request.path, message)
        if _wants_json():
            response = error_response(503, "unavailable", message)
        else:
            response = Response(f"Service Unavailable: {message}\n", 503, mimetype="text/plain")
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for error in UNAVAILABLE_ERRORS:  # the metadata database is away (or locked)

        @app.errorhandler(error)
        def database_unavailable(exc: Exception):
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return unavailable(f"the metadata database is unavailable: {reason[:300]}")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if not _wants_json():
            return exc
        status = exc.code or 500
        response = error_response(
            status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name
        )
        valid_methods = getattr(exc, "valid_methods", None)
        if status == 405 and valid_methods:
            response.headers["Allow"] = ", ".join(valid_methods)
        return response

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        logger.exception("unhandled error on %s %s", request.method, request.path)
        if not _wants_json():
            return "Internal Server Error", 500
        return error_response(500, "internal_error", "internal error; see the server log")
