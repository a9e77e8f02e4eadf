"""Launches through a real Celery worker process (shared by this module's tests), the real Redis broker and
database, and a local HTTP target that records every request and checks its signature with its own HMAC:
retries with backoff, a client error, Retry-After, a timeout, one launch for a slot fired 20 times at once,
and an async run ended by the signed callback."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis
from django.conf import settings
from django.db import connection

from executions import services
from executions.models import Attempt, Execution, ExecutionStatus
from schedules import services as trigger_services
from schedules.models import Trigger
from tests.conftest import ARTIFACTS
from tests.integration.test_launch import complete
from tests.integration.test_launch_stub import SECRET, Reply, Seen, StubTarget
from tests.support.procs import Fleet, celery_cmd, fleet, live_database_url, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def stub_targets(stub: StubTarget) -> dict:
    return {
        "default": {"kind": "demo", "speed": 0},
        "sync": stub.target("sync"),
        "async": stub.target("async"),
    }


def start_worker(group: Fleet, name: str, *, concurrency: int = 1, **env: str) -> None:
    """A worker under a unique node name; ready when it logs so (faster than `celery inspect ping`)."""
    cmd = celery_cmd(
        "worker", "--loglevel=INFO", f"--concurrency={concurrency}", "--pool=prefork",
        "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{name}-{group.marker[:8]}@%h",
    )  # fmt: skip
    proc = group.start(name, cmd, **env)
    wait_for(
        lambda: proc.poll() is not None or " ready." in group.log(name), timeout=60, what=f"{name} ready"
    )
    assert proc.poll() is None, group.log(name)


def wait_end(execution: Execution, *, timeout: float = 30) -> Execution:
    return wait_for(
        lambda: (row := Execution.objects.get(pk=execution.pk)).is_finished and row,
        timeout=timeout,
        what=f"execution {execution.pk} to end",
    )


def assert_signed_with_one_key(requests: list[Seen], execution: Execution) -> None:
    assert requests, "the target was called"
    assert all(r.signature_ok for r in requests), "every request carries a valid X-Scheduler-Signature"
    assert all(r.headers.get("authorization") == f"Bearer {SECRET}" for r in requests)
    assert {r.idempotency_key for r in requests} == {str(execution.pk)}, (
        "one idempotency key: the execution id"
    )


def new_trigger(owner, workflow_id: str, **fields) -> Trigger:
    values = {"target": "sync", "max_attempts": 3, "backoff_seconds": 1, "timeout_seconds": 5, **fields}
    return trigger_services.trigger_register(
        owner=owner, name=workflow_id, workflow_id=workflow_id, cron_expression="0 0 1 1 *", **values
    )


@pytest.fixture(scope="module")
def stub() -> Iterator[StubTarget]:
    with StubTarget(hold_limit=30) as target:
        yield target


@pytest.fixture(scope="module")
def worker(django_db_setup, stub: StubTarget) -> Iterator[Fleet]:
    """One worker (concurrency 2) for the module: starting one per test would cost seconds each."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["DATABASE_URL"] = live_database_url()
    env["SCHEDULER_TARGETS"] = json.dumps(stub_targets(stub))
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    with fleet(ARTIFACTS / "logs" / "test_executions_launch", env) as group:
        start_worker(group, "worker", concurrency=2)
        yield group
    client.flushdb()
    client.close()


@pytest.fixture(autouse=True)
def configured(settings, stub: StubTarget) -> None:
    settings.SCHEDULER_TARGETS = stub_targets(stub)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_retryable_failures_back_off_then_succeed(worker, stub, user):
    stub.script(
        "e2e-retry", [Reply(500), Reply(503), Reply(200, {"runId": "run-e2e", "result": {"rows": 3}})]
    )
    execution = services.execution_run_now(trigger=new_trigger(user, "e2e-retry"))
    execution = wait_end(execution)
    assert (execution.status, execution.run_id, execution.result) == ("succeeded", "run-e2e", {"rows": 3})
    tries = list(Attempt.objects.filter(execution=execution).order_by("number"))
    assert [(a.outcome, a.http_status) for a in tries] == [
        ("retryable", 500),
        ("retryable", 503),
        ("succeeded", 200),
    ]
    requests = stub.seen("e2e-retry")
    assert len(requests) == 3
    assert_signed_with_one_key(requests, execution)
    for n, (attempt, before, after) in enumerate(zip(tries, requests, requests[1:], strict=False), start=1):
        ceiling = 1 * 2 ** (n - 1)  # backoff_seconds=1: full jitter below 1 s, then below 2 s
        assert 0 <= attempt.retry_delay_seconds <= ceiling
        assert after.at - before.at >= attempt.retry_delay_seconds - 0.05, "the worker waited the delay"


def test_a_client_error_fails_after_one_attempt(worker, stub, user):
    stub.script("e2e-400", [Reply(400, {"error": "bad input"})])
    execution = wait_end(services.execution_run_now(trigger=new_trigger(user, "e2e-400")))
    assert execution.status == ExecutionStatus.FAILED
    assert Attempt.objects.filter(execution=execution).count() == 1
    assert_signed_with_one_key(stub.seen("e2e-400"), execution)
    assert Trigger.objects.get(pk=execution.trigger_id).consecutive_failures == 1


def test_retry_after_is_honoured(worker, stub, user):
    stub.script("e2e-429", [Reply(429, headers={"Retry-After": "2"})])
    execution = wait_end(services.execution_run_now(trigger=new_trigger(user, "e2e-429")))
    assert execution.status == ExecutionStatus.SUCCEEDED
    first, second = stub.seen("e2e-429")
    assert second.at - first.at >= 1.95
    assert Attempt.objects.get(execution=execution, number=1).retry_delay_seconds == 2.0


def test_a_slow_target_times_out(worker, stub, user):
    stub.script("e2e-slow", [Reply(delay=4)])
    trigger = new_trigger(user, "e2e-slow", timeout_seconds=1, max_attempts=1)
    execution = wait_end(services.execution_run_now(trigger=trigger))
    assert execution.status == ExecutionStatus.TIMED_OUT
    assert Attempt.objects.get(execution=execution).outcome == "timed_out"


def test_a_slot_fired_twenty_times_at_once_launches_once(worker, stub, user):
    trigger = trigger_services.trigger_register(
        owner=user, name="every minute", workflow_id="e2e-fire", target="sync", cron_expression="* * * * *"
    )
    slot = datetime.now(UTC).replace(second=0, microsecond=0)
    barrier = threading.Barrier(20)
    created: list[int] = []

    def fire() -> None:
        try:
            barrier.wait()
            created.append(len(services.execution_fire(trigger_id=trigger.pk, slot=slot)))
        finally:
            connection.close()

    threads = [threading.Thread(target=fire) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(created) == [0] * 19 + [1]
    (execution,) = Execution.objects.filter(trigger=trigger)
    assert wait_end(execution).status == ExecutionStatus.SUCCEEDED
    requests = stub.seen("e2e-fire")
    assert len(requests) == 1, "one execution, one launch"
    assert_signed_with_one_key(requests, execution)


@pytest.mark.urls("tests.integration.urls_callbacks")
def test_an_async_run_ends_by_signed_callback(worker, stub, user, client):
    stub.script("e2e-async", [Reply(202, {"runId": "run-async-1"})])
    execution = services.execution_run_now(trigger=new_trigger(user, "e2e-async", target="async"))
    running = wait_for(
        lambda: (row := Execution.objects.get(pk=execution.pk)).run_id and row, timeout=30, what="accepted"
    )
    assert (running.status, running.run_id) == (ExecutionStatus.RUNNING, "run-async-1")
    document = {"status": "succeeded", "result": {"answer": 42}}
    assert complete(client, execution.pk, document, signature="t=1,v1=bad").status_code == 403
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING
    assert complete(client, execution.pk, document).status_code == 200
    done = Execution.objects.get(pk=execution.pk)
    assert (done.status, done.result) == (ExecutionStatus.SUCCEEDED, {"answer": 42})
    assert_signed_with_one_key(stub.seen("e2e-async"), execution)
