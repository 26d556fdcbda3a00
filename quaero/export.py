"""The export of a tree (issue 16, point 5): every descendant of a job as JSON lines or
CSV, produced row by row from `queries.export_rows`, so a tree of any size streams
through the web (`GET /api/jobs/<id>/export`) or into a file (`run.py export ID`)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from quaero import queries
from quaero.models import Job
from quaero.serialize import iso

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
#: CSV columns: the job, then what a crawl's page result says, then the error.
CSV_FIELDS = (
    "id", "parent_id", "depth", "type", "status", "name", "url", "status_code", "title",
    "bytes", "error", "attempts", "created_at", "started_at", "finished_at",
)  # fmt: skip
LINES_PER_WRITE = 200  # rows joined into one chunk of the response
_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps would build one per row


def _decoded(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def record(row: tuple) -> dict[str, Any]:
    """An export row (`queries.EXPORT_COLUMNS`) as a JSON object: the job's fields, its
    URL, result and error."""
    (
        job_id, parent_id, depth, type_, status, name, payload, result, error, attempts,
        created_at, started_at, finished_at,
    ) = row  # fmt: skip
    payload = _decoded(payload)
    return {
        "id": job_id,
        "parent_id": parent_id,
        "depth": depth,
        "type": type_,
        "status": status,
        "name": name,
        "url": payload.get("url") if isinstance(payload, dict) else None,
        "result": _decoded(result),
        "error": error,
        "attempts": attempts,
        "created_at": iso(created_at),
        "started_at": iso(started_at),
        "finished_at": iso(finished_at),
    }


def csv_row(data: dict[str, Any]) -> list[Any]:
    """A record as a CSV row: a crawl page's url, status code, title, depth and bytes
    come from its result."""
    result = data["result"] if isinstance(data["result"], dict) else {}
    merged = {
        **data,
        "url": result.get("url") or data["url"],
        "status_code": result.get("status_code"),
        "title": result.get("title"),
        "depth": result.get("depth", data["depth"]),
        "bytes": result.get("bytes"),
    }
    return ["" if merged[name] is None else merged[name] for name in CSV_FIELDS]


def _batched(lines: Iterator[str]) -> Iterator[str]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= LINES_PER_WRITE:
            yield "".join(batch)
            batch = []
    if batch:
        yield "".join(batch)


def stream(job: Job, fmt: str) -> Iterator[str]:
    """The export of a job's descendants in `fmt` ("jsonl" or "csv"), in chunks of text."""
    records = (record(row) for row in queries.export_rows(job))
    if fmt == "jsonl":
        return _batched(_JSON.encode(r) + "\n" for r in records)
    return _batched(_csv_lines(records))


def _csv_lines(records: Iterator[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_FIELDS)
    for data in records:
        writer.writerow(csv_row(data))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.getvalue():
        yield buffer.getvalue()
