"""What a descendant's failure means for a job: its `on_child_failure` option.

"ignore" (the default) changes nothing: the job completes, its failed descendants
counted ("completed with N failed"). "fail": once a descendant's own work failed for
good (no attempts left, a permanent error, a lost worker), the job fails, and its
unfinished descendants are cancelled. The job manager applies it in the transaction
that records the failure, nearest such ancestor first.
"""

from __future__ import annotations

from quaero.models import UNFINISHED, Job

POLICIES = ("ignore", "fail")


def ancestors_to_fail(job: Job) -> list[int]:
    """Ids of the unfinished ancestors of a job that failed for good whose policy is
    "fail", nearest first (ids grow down a tree)."""
    ids = job.ancestor_ids
    if not ids:
        return []
    query = (
        Job.select(Job.id)
        .where(Job.id.in_(ids), Job.on_child_failure == "fail", Job.status.in_(UNFINISHED))
        .order_by(Job.id.desc())
    )
    return [job_id for (job_id,) in query.tuples()]


def failure_message(failed: Job) -> str:
    """The error of a job failed by its policy: which descendant failed."""
    return f"descendant {failed.id} ({failed.type}) failed for good; on_child_failure = fail"
