"""Failure triage: an error's group, the same for every error with the same cause.

An error message carries variable parts (a URL, a status code, an id, a quoted value,
an address, a line number); `normalise` replaces each with a placeholder, so "HTTP 503
for https://a.example/p/1" and "HTTP 502 for https://b.example/x" are both "HTTP <n>
for <url>". `group_key` hashes that text into the short key stored on the job row
(`jobs.error_group`, migrations/010_triage.sql) once, when the job fails for good: a
tree's failures by cause are then one indexed GROUP BY.
"""

from __future__ import annotations

import hashlib
import re

import peewee

#: Only the start of an error names its cause (the rest is often a dump of the input).
MAX_MESSAGE = 300

# Order matters: URLs before addresses and paths, quoted values before numbers.
PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I), "<url>"),
    (re.compile(r"\b[\w.+-]+@[\w-]+(\.[\w-]+)+\b"), "<email>"),
    (re.compile(r"'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`"), "<str>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (re.compile(r"\b(\d{1,3}\.){3}\d{1,3}(:\d+)?\b"), "<addr>"),
    (re.compile(r"\[?\b([0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}\]?(:\d+)?", re.I), "<addr>"),
    (re.compile(r"\b[\w-]+(\.[\w-]+)*\.[a-z]{2,}:\d+\b", re.I), "<addr>"),
    (re.compile(r"(?<![\w/])(/[\w.@-]+){2,}/?"), "<path>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.I), "<id>"),
    (re.compile(r"[-+]?\b\d+(\.\d+)?(e[-+]?\d+)?\b", re.I), "<n>"),
    (re.compile(r"\s+"), " "),
]


def normalise(error: str) -> str:
    """The error's first non-empty line with its variable parts replaced by placeholders."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    text = lines[0][:MAX_MESSAGE] if lines else ""
    for pattern, placeholder in PATTERNS:
        text = pattern.sub(placeholder, text)
    return text.strip()


def group_key(error: str) -> str:
    """The stored group key of an error: 16 hex digits of the normalised text's hash."""
    return hashlib.sha1(normalise(error).encode()).hexdigest()[:16]


def record_error_group(db: peewee.Database, job_id: int, error: str | None) -> None:
    """Store the group of a job that failed for good (in the caller's transaction)."""
    if error is not None:
        db.execute_sql(
            f"UPDATE jobs SET error_group = {db.param} WHERE id = {db.param}",
            (group_key(error), job_id),
        )
