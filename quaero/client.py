"""A Python client of quaero's HTTP API, built on `requests`.

    from quaero.client import Client

    with Client("http://127.0.0.1:8085", token=None) as quaero:
        job = quaero.submit("crawler", {"url": "https://example.org/", "depth": 1})
        for line in quaero.tail(job["id"]):
            print(line["level"], line["message"])
        print(quaero.wait(job["id"], timeout=600)["counts"])

Every method returns the API's JSON (the job shape of `GET /api/jobs/<id>`). An error
answer raises a subclass of `ApiError` carrying the API's `error.code`, its message,
`fields` (each bad field → why) and the HTTP status; network failures raise `requests`'
own exceptions. This module imports nothing else of quaero, so it can be copied alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import requests

FINISHED = ("completed", "failed", "cancelled")

__all__ = [
    "ApiError",
    "Client",
    "Conflict",
    "Forbidden",
    "IdempotencyKeyReused",
    "NotFound",
    "TooLarge",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "ValidationError",
    "WaitTimeout",
]


class ApiError(Exception):
    """An error answer of the API: `status`, `code` (the API's `error.code`), `message`,
    `fields` ({"payload.url": "why"}, maybe empty) and `retry_after` (seconds, or None)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status, self.code, self.message = status, code, message
        self.fields = fields or {}
        self.retry_after = retry_after
        details = "; ".join(f"{name}: {why}" for name, why in self.fields.items())
        super().__init__(f"{status} {code}: {message}" + (f" ({details})" if details else ""))


class ValidationError(ApiError):
    """400: bad JSON, fields or query arguments; `fields` names each bad one."""


class Unauthorized(ApiError):
    """401: a missing or wrong token."""


class Forbidden(ApiError):
    """403: read-only mode, a cross-site request, or a non-loopback host without a token."""


class NotFound(ApiError):
    """404: no such job."""


class Conflict(ApiError):
    """409: the job is in the wrong state for this (e.g. cancelling a finished job)."""


class TooLarge(ApiError):
    """413: the body is larger than the server's `max_body_bytes`."""


class IdempotencyKeyReused(ApiError):
    """422: the Idempotency-Key was used before for a different request body."""


class TooManyRequests(ApiError):
    """429: too many wrong tokens from this address; wait `retry_after` seconds."""


class Unavailable(ApiError):
    """503: the metadata database or the queue is away; retry after `retry_after`."""


ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationError,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: IdempotencyKeyReused,
    429: TooManyRequests,
    503: Unavailable,
}


class WaitTimeout(TimeoutError):
    """`Client.wait` or `Client.tail` gave up; `job` is the job as last seen."""

    def __init__(self, job: dict[str, Any], timeout: float) -> None:
        super().__init__(f"job {job['id']} still {job['status']} after {timeout} s")
        self.job = job


def error_from(response: requests.Response) -> ApiError:
    """The typed exception of an error answer (any body: JSON in the API's shape or not)."""
    try:
        error = response.json()["error"]
        code, message, fields = error["code"], error["message"], error.get("fields")
    except (ValueError, KeyError, TypeError):
        code, message, fields = f"http_{response.status_code}", response.text[:200], None
    retry_after = response.headers.get("Retry-After")
    cls = ERRORS_BY_STATUS.get(response.status_code, ApiError)
    return cls(
        response.status_code,
        code,
        message,
        fields,
        float(retry_after) if retry_after and retry_after.isdigit() else None,
    )


class Client:
    """quaero's API at `base_url` (e.g. "http://127.0.0.1:8085"), with `token` as its
    `[server] api_token` when the server has one."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout  # seconds per HTTP request
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.session.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        response = self.session.request(
            method,
            self.base_url + path,
            json=json,
            params={k: v for k, v in (params or {}).items() if v is not None},
            headers=headers,
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            raise error_from(response)
        return response.json()

    def submit(
        self,
        type: str,  # noqa: A002 (the API's word)
        payload: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        run_at: float | str | None = None,
        delay: float | None = None,
        on_child_failure: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a root job; returns it. `run_at` (epoch seconds or ISO 8601) or
        `delay` (seconds) start it later; `on_child_failure` is "ignore" or "fail".
        With `idempotency_key`, sending the same submission again (after a timeout, a
        503) returns the first one's job."""
        body: dict[str, Any] = {"type": type, "payload": payload or {}}
        extra = {
            "name": name,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "run_at": run_at,
            "delay": delay,
            "on_child_failure": on_child_failure,
        }
        body.update({key: value for key, value in extra.items() if value is not None})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", "/api/jobs", json=body, headers=headers)

    def get(self, job_id: int) -> dict[str, Any]:
        """A job with its descendants' `counts` and `progress`."""
        return self._call("GET", f"/api/jobs/{job_id}")

    def children(
        self,
        job_id: int,
        *,
        status: str | None = None,
        type: str | None = None,  # noqa: A002
        q: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """One page of a job's direct children, oldest first: {"jobs", "total", "limit",
        "offset"}."""
        params = {"status": status, "type": type, "q": q, "limit": limit, "offset": offset}
        return self._call("GET", f"/api/jobs/{job_id}/children", params=params)

    def logs(
        self,
        job_id: int,
        *,
        level: str | None = None,
        after_id: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """A job's log lines, oldest first (`level`: minimum; `after_id`: only later)."""
        params = {"level": level, "after_id": after_id, "limit": limit}
        return self._call("GET", f"/api/jobs/{job_id}/logs", params=params)["logs"]

    def tail(
        self,
        job_id: int,
        *,
        level: str | None = None,
        after_id: int | None = None,
        poll: float = 0.5,
        timeout: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield a job's log lines as they are written, until the job has finished and
        its last line was yielded (WaitTimeout after `timeout` seconds, if given)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = self.get(job_id)["status"] in FINISHED  # before the read: no loss
            lines = self.logs(job_id, level=level, after_id=after_id, limit=1000)
            for line in lines:
                after_id = line["id"]
                yield line
            if len(lines) == 1000:
                continue  # more are waiting
            if finished:
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(self.get(job_id), timeout)
            time.sleep(poll)

    def wait(self, job_id: int, timeout: float | None = None, poll: float = 0.5) -> dict[str, Any]:
        """The job once it is completed, failed or cancelled (its whole tree finished);
        WaitTimeout after `timeout` seconds (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["status"] in FINISHED:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job, timeout)
            time.sleep(
                poll if deadline is None else min(poll, max(0.0, deadline - time.monotonic()))
            )

    def cancel(self, job_id: int) -> dict[str, Any]:
        """Cancel the job and its unfinished descendants (Conflict if finished)."""
        return self._call("POST", f"/api/jobs/{job_id}/cancel")

    def retry(self, job_id: int) -> dict[str, Any]:
        """Run the tree's failed and cancelled jobs again (Conflict if none)."""
        return self._call("POST", f"/api/jobs/{job_id}/retry")

    def rerun(self, job_id: int, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new root with the job's type and payload, `payload`'s keys overriding."""
        return self._call("POST", f"/api/jobs/{job_id}/rerun", json={"payload": payload or {}})

    def pause(self, job_id: int) -> dict[str, Any]:
        """Hold back the tree's pending jobs."""
        return self._call("POST", f"/api/jobs/{job_id}/pause")

    def resume(self, job_id: int) -> dict[str, Any]:
        """Release the tree's held-back jobs."""
        return self._call("POST", f"/api/jobs/{job_id}/resume")
