"""The demo target: a tiny built-in workflow engine, so `make run` shows runs that succeed, fail and retry
with nothing else installed. It is the default target in development.

    {"kind": "demo", "speed": 1.0,
     "workflows": {"mine": {"steps": ["a", "b"], "seconds": 2, "failure_rate": 0.3,
                            "credits": 2, "tokens": 1500}}}

A demo workflow is a list of steps, a nominal duration and a failure rate. Whether an attempt fails, at
which step, and whether the failure is retryable are drawn from a generator seeded with
`f"{execution_id}:{attempt}"`: the same attempt of the same execution always ends the same way (tests rely on
it, and `plan()` tells them in advance), while different attempts differ, so a flaky workflow shows a
failure followed by a successful retry. `speed` scales every sleep (0 = instant, for tests). Unknown
workflow ids run the `default` workflow. Synchronous: the steps run inside the worker, bounded by the
call timeout (a slow workflow past it ends `timed_out`).

A workflow with `credits` or `tokens` reports usage when it succeeds, as a metered target would (see
`executions.usage`): its credits per run, and about `tokens` input tokens (drawn from the same seeded
generator, 0.5x to 1.5x) with a quarter as many output tokens, priced like a model API; so `make run` shows
usage in the history, the stats, `/metrics` and against credit budgets.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from executions.launchers.base import Launcher, LaunchPayload, LaunchResult, reported_usage
from executions.usage import Usage

if TYPE_CHECKING:
    from executions.models import Execution


@dataclass(frozen=True)
class DemoWorkflow:
    title: str
    steps: tuple[str, ...]
    seconds: float
    failure_rate: float = 0.0
    fatal_share: float = 0.0  # share of failures that retrying cannot fix
    credits: float = 0.0  # credits a successful run reports
    tokens: int = 0  # nominal input tokens a successful run reports

    @classmethod
    def from_config(cls, name: str, raw: Mapping[str, Any]) -> DemoWorkflow:
        return cls(
            title=str(raw.get("title", name)),
            steps=tuple(str(s) for s in raw.get("steps", ("run",))) or ("run",),
            seconds=float(raw.get("seconds", 0.5)),
            failure_rate=float(raw.get("failure_rate", 0.0)),
            fatal_share=float(raw.get("fatal_share", 0.0)),
            credits=float(raw.get("credits", 0.0)),
            tokens=int(raw.get("tokens", 0)),
        )


WORKFLOWS: dict[str, DemoWorkflow] = {
    "default": DemoWorkflow("Generic workflow", ("run",), 0.5, failure_rate=0.1, credits=1),
    "hello": DemoWorkflow("Say hello", ("greet",), 0.2),
    "etl": DemoWorkflow("Nightly ETL", ("extract", "transform", "load"), 1.5, failure_rate=0.1, credits=5),
    "agent": DemoWorkflow(
        "Research agent",
        ("plan", "search", "read", "reflect", "answer"),
        2.5,
        failure_rate=0.15,
        credits=2,
        tokens=1800,
    ),
    "flaky": DemoWorkflow("Flaky API call", ("call-api", "store"), 0.5, failure_rate=0.5),
    "slow": DemoWorkflow("Slow report", ("query", "render", "publish"), 20.0),
    "broken": DemoWorkflow("Always broken", ("explode",), 0.1, failure_rate=1.0, fatal_share=1.0),
}


@dataclass(frozen=True)
class DemoPlan:
    """How one attempt will go, decided before it starts."""

    workflow: str
    workflow_def: DemoWorkflow
    failed_step: str | None  # None: every step succeeds
    retryable: bool
    usage: Usage | None = None  # what the run reports using when it succeeds

    @property
    def succeeds(self) -> bool:
        return self.failed_step is None


def catalogue(config: Mapping[str, Any] | None = None) -> dict[str, DemoWorkflow]:
    extra = (config or {}).get("workflows") or {}
    return {**WORKFLOWS, **{name: DemoWorkflow.from_config(name, raw) for name, raw in extra.items()}}


def plan(
    workflow_id: str, execution_id: str, attempt: int, *, config: Mapping[str, Any] | None = None
) -> DemoPlan:
    """The deterministic fate of one attempt (pure: no clock, no sleep)."""
    workflows = catalogue(config)
    name = workflow_id if workflow_id in workflows else "default"
    workflow = workflows[name]
    rng = random.Random(f"{execution_id}:{attempt}")  # noqa: S311 - a demo's dice, not a secret
    fails = rng.random() < workflow.failure_rate
    failed_step = rng.choice(workflow.steps) if fails else None
    retryable = rng.random() >= workflow.fatal_share
    return DemoPlan(name, workflow, failed_step, retryable, _usage(workflow, rng))


#: Model-API-like prices per token (input, output), for the demo's cost.
PRICE_PER_TOKEN = (Decimal("0.000003"), Decimal("0.000015"))


def _usage(workflow: DemoWorkflow, rng: random.Random) -> Usage | None:
    """Drawn after the fate of the attempt, so adding usage changed no demo run's outcome."""
    if not workflow.credits and not workflow.tokens:
        return None
    input_tokens = int(workflow.tokens * (0.5 + rng.random())) if workflow.tokens else None
    output_tokens = input_tokens // 4 if input_tokens is not None else None
    cost = None
    if input_tokens is not None and output_tokens is not None:
        cost = input_tokens * PRICE_PER_TOKEN[0] + output_tokens * PRICE_PER_TOKEN[1]
    credits = Decimal(str(workflow.credits)) if workflow.credits else None
    return Usage(credits=credits, input_tokens=input_tokens, output_tokens=output_tokens, cost=cost)


class DemoFailure(Exception):
    """A demo step failed (raised by the Celery demo task; the launcher returns a result instead)."""


def run(
    payload: LaunchPayload, *, config: Mapping[str, Any] | None = None, timeout: float | None = None
) -> tuple[DemoPlan, dict[str, Any], bool]:
    """Play the steps with their sleeps. Returns the plan, a result document, and whether the timeout cut
    the run short."""
    decided = plan(payload.workflow_id, payload.execution_id, payload.attempt, config=config)
    speed = float((config or {}).get("speed", 1.0))
    per_step = decided.workflow_def.seconds * speed / len(decided.workflow_def.steps)
    done: list[str] = []
    started = time.monotonic()
    for step in decided.workflow_def.steps:
        if timeout is not None and time.monotonic() - started + per_step > timeout:
            time.sleep(max(0.0, timeout - (time.monotonic() - started)))
            return decided, {"workflow": decided.workflow, "steps": done}, True
        time.sleep(per_step)
        if step == decided.failed_step:
            break
        done.append(step)
    document: dict[str, Any] = {
        "workflow": decided.workflow,
        "title": decided.workflow_def.title,
        "steps": done,
    }
    if decided.succeeds and decided.usage is not None:
        document["usage"] = decided.usage.as_camel()  # as a metered target answers
    return decided, document, False


class DemoLauncher(Launcher):
    kind = "demo"
    batchable = True

    def launch(self, execution: Execution) -> LaunchResult:
        payload = LaunchPayload.of(execution)
        decided, document, timed_out = run(payload, config=self.config, timeout=self.call_timeout(execution))
        run_id = f"demo-{payload.execution_id[:8]}-{payload.attempt}"
        if timed_out:
            return LaunchResult.failed(
                f"demo workflow {decided.workflow!r} ran past its timeout",
                retryable=True,
                timed_out=True,
                run_id=run_id,
            )
        if not decided.succeeds:
            kind = "simulated 503, retryable" if decided.retryable else "simulated bug, not retryable"
            return LaunchResult.failed(
                f"demo step {decided.failed_step!r} of {decided.workflow!r} failed ({kind})",
                retryable=decided.retryable,
                run_id=run_id,
            )
        usage, note = reported_usage(document)
        result = {key: value for key, value in document.items() if key != "usage"}
        return LaunchResult.succeeded(run_id=run_id, result=result, usage=usage, note=note)
