"""The hot path's SQL: plain statements with named parameters, for SQLite and PostgreSQL.

Every job passes through the claim and the finish, so these are written as SQL rather
than built with peewee's query builder (~0.5 ms a statement, more than SQLite takes to
run them). Each parameter has a name (`:now`), so a statement reads on its own; `render`
turns the names into the driver's placeholders (sqlite3 takes `:name` as it is, psycopg
wants `%(name)s`), and the statement runs with a dict: `db.execute_sql(sql, {...})`.
A literal `%` would have to be written `%%` for psycopg; none of these has one.

Statuses are SQL text literals here ('pending', 'running'): they are `JobStatus` values,
spelled out so that each statement stays plain SQL.
"""

from __future__ import annotations

import re

#: A retry may be claimed this many seconds before its `run_after`. Huey never runs a
#: scheduled message before its eta, and the eta is taken after `run_after`, so on one
#: host the claim is never early. But with a shared Redis queue, one host's scheduler may
#: release the message and another host, whose clock is a little behind, claim it: a claim
#: refused as early drops the message, and the job waits for the orphan sweep (every 5 s). So
#: clocks may disagree by this much; the retry then starts at most this much early.
CLAIM_CLOCK_SKEW = 0.5

CLAIM = """
UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_epoch = lease_epoch + 1,
    worker_id = :worker_id, lease_expires_at = :lease_expires_at, run_after = NULL,
    waiting_reason = NULL, started_at = :now, updated_at = :now
WHERE id = :id AND status = 'pending' AND paused = FALSE
    AND (run_after IS NULL OR run_after <= :due_by)
RETURNING *
"""

# The attempt records its own work's outcome; the job finishes now if no descendant is
# open, else it stays running until they finish (SETTLE). Only the attempt holding the
# lease may: the reaper passes `lease_expired_by` and finishes only a job whose lease
# expired by then (no heartbeat renewed it meanwhile); a worker passes NULL. (The
# comparison comes first: PostgreSQL infers the parameter's type from it.)
FINISH = """
UPDATE jobs SET outcome = :outcome,
    status = CASE WHEN n_open = 0 THEN :outcome ELSE 'running' END,
    finished_at = CASE WHEN n_open = 0 THEN :now ELSE NULL END,
    result = :result, error = :error, traceback = :traceback,
    progress = COALESCE(:progress, progress),
    worker_id = NULL, lease_expires_at = NULL, updated_at = :now
WHERE id = :id AND status = 'running' AND worker_id = :worker_id
    AND lease_epoch = :lease_epoch
    AND (lease_expires_at < :lease_expired_by OR :lease_expired_by IS NULL)
RETURNING status
"""

# One statement proves an attempt still holds its job (running, or cancelled while it
# ran, under the same epoch) and sets the progress it reported.
STILL_HELD = """
UPDATE jobs SET progress = COALESCE(:progress, progress), updated_at = :now
WHERE id = :id AND status IN ('running', 'cancelled') AND lease_epoch = :lease_epoch
    AND outcome IS NULL
RETURNING id
"""

# A job whose own work is done finishes when its last open descendant does.
SETTLE = """
UPDATE jobs SET status = outcome, finished_at = :now, updated_at = :now
WHERE id = :id AND status = 'running' AND outcome IS NOT NULL AND n_open = 0
RETURNING parent_id, path, outcome, type, started_at
"""

#: The columns of a child row, in the order `insert_children` expects its values.
CHILD_COLUMNS = (
    "parent_id", "root_id", "path", "depth", "type", "name", "paused", "payload",
    "dedup_key", "max_attempts", "priority", "created_at", "updated_at",
)  # fmt: skip

NAMED_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def render(statement: str, dialect: str) -> str:
    """The statement with its `:name` parameters in the driver's placeholder style."""
    if dialect == "postgresql":
        return NAMED_PARAMETER.sub(r"%(\1)s", statement)
    return statement


#: PostgreSQL's insert of children: one array per column of CHILD_COLUMNS, whatever the
#: number of rows, so the statement's text stays short (psycopg converts a long one in
#: Python on every call, and PostgreSQL parses it again).
INSERT_CHILDREN_FROM_ARRAYS = (
    f"INSERT INTO jobs ({', '.join(CHILD_COLUMNS)}, status)"
    " SELECT *, 'pending' FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::int[],"
    " %s::text[], %s::text[], %s::boolean[], %s::text[], %s::text[], %s::int[], %s::int[],"
    " %s::double precision[], %s::double precision[])"
    " ON CONFLICT DO NOTHING RETURNING id, priority, type"
)
#: PostgreSQL: which of an array of dedup keys a tree already has (see `known_keys`).
KNOWN_KEYS_FROM_ARRAY = "SELECT dedup_key FROM jobs WHERE root_id = %s AND dedup_key = ANY(%s)"


def known_keys(keys: int, param: str) -> str:
    """Which of `keys` dedup keys (parameters after the root id) a tree already has."""
    marks = ", ".join([param] * keys)
    return f"SELECT dedup_key FROM jobs WHERE root_id = {param} AND dedup_key IN ({marks})"


def insert_children(rows: int, param: str) -> str:
    """An INSERT of `rows` pending children; values row after row in CHILD_COLUMNS order.

    Positional (`param` is the driver's placeholder), as a bulk insert of up to hundreds
    of rows would need a name per row and column. A child whose `(root_id, dedup_key)`
    the tree already has is skipped; the created ones come back as (id, priority, type).
    """
    row = "(" + ", ".join([param] * len(CHILD_COLUMNS)) + ", 'pending')"
    return (
        f"INSERT INTO jobs ({', '.join(CHILD_COLUMNS)}, status) VALUES "
        + ", ".join([row] * rows)
        + " ON CONFLICT DO NOTHING RETURNING id, priority, type"
    )
