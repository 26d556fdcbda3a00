"""The `bulk` executor: a large bulk action (quaero/bulk.py) run as a job of its own, so
it survives a restart of the web process and shows its progress like any job."""

from __future__ import annotations

from typing import Any

from quaero import bulk
from quaero.executors.base import Executor, JobContext, register


@register
class BulkExecutor(Executor):
    """Retries, cancels, deletes, pauses or resumes every tree a filter matches.

    Only the API creates it (`POST /api/jobs/bulk` above `[jobs] bulk_inline_jobs`): not
    submittable, and not a demo type."""

    type = "bulk"
    public = False

    def run(self, ctx: JobContext) -> dict[str, Any] | None:
        action = ctx.payload["action"]
        f = bulk.BulkFilter(
            **{
                k: tuple(v) if k == "ids" else v
                for k, v in ctx.payload["filter"].items()
                if k in bulk.FILTER_KEYS
            }
        )
        ctx.info(f"{action} on {ctx.payload.get('expected', {})}: starting")

        def progress(done: int, expected: int) -> None:
            ctx.progress(min(1.0, done / expected))
            ctx.raise_if_cancelled()

        counts = bulk.run(ctx.manager, action, f, exclude=ctx.job.id, progress=progress)
        ctx.info(f"{action}: {counts['done']} trees done, {counts['skipped']} skipped")
        return {"action": action, **counts}
