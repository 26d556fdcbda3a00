"""Small built-in executors: `noop`, `sleep` and `fanout` (tests, benchmarks, demos)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from quaero.executors.base import (
    REGISTRY,
    ChildSpec,
    Executor,
    JobContext,
    PermanentError,
    register,
)


class NoopPayload(BaseModel):
    model_config = ConfigDict(extra="allow")


@register
class NoopExecutor(Executor):
    """Does nothing and completes: the cheapest possible job."""

    type = "noop"
    demo = True
    payload_model = NoopPayload

    def run(self, ctx: JobContext) -> dict[str, Any] | None:
        return None


class SleepPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(1.0, ge=0, le=3600)
    steps: int = Field(1, ge=1, le=1000, description="progress reports (and log lines)")
    fail: Literal["", "transient", "permanent"] = ""
    fail_attempts: int = Field(0, ge=0, description="fail only the first N attempts")


@register
class SleepExecutor(Executor):
    """Sleeps, reporting progress and logging as it goes; can fail on purpose."""

    type = "sleep"
    demo = True
    payload_model = SleepPayload

    def run(self, ctx: JobContext) -> dict[str, Any] | None:
        p = SleepPayload.model_validate(ctx.payload)
        for step in range(p.steps):
            ctx.raise_if_cancelled()
            time.sleep(p.seconds / p.steps)
            ctx.progress((step + 1) / p.steps)
            ctx.info(f"step {step + 1}/{p.steps}")
        failing = p.fail and (not p.fail_attempts or ctx.job.attempts <= p.fail_attempts)
        if failing and p.fail == "permanent":
            raise PermanentError("asked to fail permanently")
        if failing:
            raise RuntimeError(f"asked to fail (attempt {ctx.job.attempts})")
        return {"slept": p.seconds}


class FanoutPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    children: int = Field(10, ge=0, le=100_000)
    child_type: str = "noop"
    child_payload: dict[str, Any] = Field(default_factory=dict)
    batch: int = Field(1000, ge=1, le=10_000)

    @model_validator(mode="after")
    def _child_is_submittable(self) -> FanoutPayload:
        # a fan-out creates only what a user could submit, validated the same way: an
        # internal type (the crawler's pages) with hand-made settings would skip its caps
        child = REGISTRY.get(self.child_type)
        if child is None or not child.public:
            raise ValueError(f"child_type {self.child_type!r} is not a type a user may submit")
        if child.payload_model is not None:
            self.child_payload = child.payload_model.model_validate(self.child_payload).model_dump(
                mode="json"
            )
        return self


@register
class FanoutExecutor(Executor):
    """Spawns `children` jobs of `child_type` in batches: a tree in one call."""

    type = "fanout"
    demo = True
    payload_model = FanoutPayload

    def run(self, ctx: JobContext) -> dict[str, Any] | None:
        p = FanoutPayload.model_validate(ctx.payload)
        created = 0
        # Walk the positions, not the count created: after a crash a new attempt finds
        # some children already there (spawn skips them) and creates only the rest.
        for start in range(0, p.children, p.batch):
            ctx.raise_if_cancelled()
            n = min(p.batch, p.children - start)
            specs = [
                ChildSpec(p.child_type, p.child_payload, name=f"{p.child_type} {start + i}")
                for i in range(n)
            ]
            created += len(ctx.spawn(specs))
            ctx.progress((start + n) / p.children)
        ctx.info(f"spawned {created} {p.child_type} jobs ({p.children - created} existed)")
        return {"spawned": created, "children": p.children}
