"""The launch service against the real database and a local HTTP target, with the broker replaced by a list:
each test plays the worker by delivering the messages the service sent (`deliver`), so retries, redelivery,
cancellation, callbacks and the sweeper are driven step by step without waiting out real countdowns. The
e2e tests (tests/e2e/test_executions_*.py) run the same flows through real worker processes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from executions import policies, services
from executions.launchers import demo
from executions.launchers.http import HttpLauncher
from executions.models import Attempt, AttemptOutcome, Execution, ExecutionOrigin, ExecutionStatus
from executions.services import dispatch, launch, sweep
from schedules import services as trigger_services
from schedules.models import Trigger
from tests.integration.test_launch_stub import SECRET, Reply, StubTarget
from tests.support.procs import free_port
from toolkit import clock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
CALLBACK_URLS = "tests.integration.urls_callbacks"


@dataclass
class Message:
    execution_id: str
    task_id: str
    priority: str
    countdown: float


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    """The `user` fixture sets a password; the production hasher would spend half a second per test on it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def stub() -> Iterator[StubTarget]:
    with StubTarget(hold_limit=10) as target:
        yield target


@pytest.fixture
def targets(settings, stub: StubTarget) -> dict:
    settings.SCHEDULER_TARGETS = {
        "default": {"kind": "demo", "speed": 0},
        "sync": stub.target("sync"),
        "async": stub.target("async"),
        "python": {"kind": "python", "callable": "tests.unit.test_launchers.sample_callable"},
        "celery": {"kind": "celery", "task": "flows.report", "queue": "reports"},
        "nowhere": {"kind": "http", "url": f"http://127.0.0.1:{free_port()}/workflows/{{workflow_id}}/runs"},
    }
    return settings.SCHEDULER_TARGETS


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    """The broker, as a list of the launch messages the service published."""
    sent: list[Message] = []

    def publish_many(launches) -> None:
        sent.extend(Message(str(m.execution_id), m.task_id, m.priority, m.countdown) for m in launches)

    monkeypatch.setattr(dispatch, "publish_many", publish_many)
    return sent


@pytest.fixture
def jitter_high(monkeypatch: pytest.MonkeyPatch) -> float:
    """Pin full jitter's draw so the delays are predictable: 0.9 of each ceiling."""
    monkeypatch.setattr(policies.random, "random", lambda: 0.9)
    return 0.9


@pytest.fixture
def make_trigger(user, targets):
    def make(target: str = "sync", workflow_id: str = "wf", **fields) -> Trigger:
        defaults = {"max_attempts": 3, "backoff_seconds": 1, "timeout_seconds": 5}
        return trigger_services.trigger_register(
            owner=user, name=f"t-{workflow_id}", workflow_id=workflow_id, target=target,
            cron_expression="0 0 1 1 *", **{**defaults, **fields},
        )  # fmt: skip

    return make


def deliver(broker: list[Message], execution: Execution, *, index: int = -1) -> Execution:
    """Play the worker: hand the execution's message (the latest by default) to the launch task's service."""
    message = [m for m in broker if m.execution_id == str(execution.pk)][index]
    services.execution_launch_attempt(execution_id=message.execution_id, task_id=message.task_id)
    return Execution.objects.get(pk=execution.pk)


def drain(broker: list[Message], execution: Execution, *, limit: int = 10) -> Execution:
    """Deliver the latest message until the run ends or stops producing messages."""
    delivered = 0
    while delivered < limit:
        execution = deliver(broker, execution)
        delivered += 1
        if execution.is_finished or execution.status == ExecutionStatus.RUNNING:
            return execution
    return execution


def attempts(execution: Execution) -> list[tuple[str, int | None, float | None]]:
    rows = Attempt.objects.filter(execution=execution).order_by("number")
    return [(a.outcome, a.http_status, a.retry_delay_seconds) for a in rows]


def kill_mid_call(monkeypatch: pytest.MonkeyPatch, broker: list[Message], execution: Execution) -> None:
    """Deliver the execution's message to a worker that dies inside the launcher call: the attempt is
    claimed (committed) but its end is never recorded, as after `kill -9`."""
    real_launch = HttpLauncher.launch

    def killed(self, run):
        raise KeyboardInterrupt("kill -9")  # not an Exception: nothing records the attempt's end

    monkeypatch.setattr(HttpLauncher, "launch", killed)
    with pytest.raises(KeyboardInterrupt):
        deliver(broker, execution)
    monkeypatch.setattr(HttpLauncher, "launch", real_launch)


def signed(body: bytes, secret: str = SECRET) -> str:
    t = str(int(time.time()))
    return f"t={t},v1={hmac.new(secret.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"


def complete(client: Client, execution_id, document, *, signature: str | None = "sign", slash: str = ""):
    body = json.dumps(document).encode() if not isinstance(document, bytes) else document
    headers = (
        {}
        if signature is None
        else {"HTTP_X_SCHEDULER_SIGNATURE": signed(body) if signature == "sign" else signature}
    )
    return client.post(
        f"/api/v1/executions/{execution_id}/complete{slash}", body, content_type="application/json", **headers
    )


# --- retries ---------------------------------------------------------------------------------------------


def test_retryable_failures_back_off_then_succeed(make_trigger, broker, stub, jitter_high):
    stub.script("wf", [Reply(500), Reply(502), Reply(200, {"runId": "run-xyz", "result": {"rows": 3}})])
    trigger = make_trigger()
    execution = services.execution_run_now(trigger=trigger)
    for _ in range(3):
        execution = deliver(broker, execution)
    assert execution.status == ExecutionStatus.SUCCEEDED
    assert (execution.run_id, execution.result, execution.attempts) == ("run-xyz", {"rows": 3}, 3)
    assert execution.duration_ms is not None
    assert attempts(execution) == [("retryable", 500, 0.9), ("retryable", 502, 1.8), ("succeeded", 200, None)]
    assert [m.countdown for m in broker] == [0.0, 0.9, 1.8], "each retry is a new message with its delay"
    assert len({m.task_id for m in broker}) == 3
    requests = stub.seen("wf")
    assert {r.idempotency_key for r in requests} == {str(execution.pk)}
    assert all(r.signature_ok for r in requests)
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in requests)
    assert [r.json["attempt"] for r in requests] == [1, 2, 3]
    assert requests[0].json == {
        "executionId": str(execution.pk), "triggerId": str(trigger.pk), "workflowId": "wf",
        "scheduledAt": requests[0].json["scheduledAt"], "attempt": 1, "input": {}, "metadata": {},
    }  # fmt: skip
    trigger.refresh_from_db()
    assert (trigger.last_status, trigger.failure_count, trigger.consecutive_failures) == ("succeeded", 0, 0)


def test_client_error_fails_at_once(make_trigger, broker, stub):
    stub.script("wf", [Reply(400, {"error": "no such workflow"})])
    trigger = make_trigger()
    execution = drain(broker, services.execution_run_now(trigger=trigger))
    assert execution.status == ExecutionStatus.FAILED
    assert attempts(execution) == [("failed", 400, None)]
    assert "HTTP 400" in execution.error
    assert len(broker) == 1, "no retry"
    trigger.refresh_from_db()
    assert (trigger.failure_count, trigger.consecutive_failures, trigger.last_status) == (1, 1, "failed")
    assert "HTTP 400" in trigger.last_error


def test_retry_after_is_honoured_and_capped_below_the_visibility_timeout(make_trigger, broker, stub):
    stub.script(
        "wf", [Reply(429, headers={"Retry-After": "2"}), Reply(503, headers={"Retry-After": "86400"})]
    )
    execution = drain(broker, services.execution_run_now(trigger=make_trigger()))
    assert execution.status == ExecutionStatus.SUCCEEDED
    cap = dispatch.retry_cap()
    assert cap < 10, "the test broker's visibility timeout is 10 s"
    assert attempts(execution) == [("retryable", 429, 2.0), ("retryable", 503, cap), ("succeeded", 200, None)]


def test_out_of_attempts_fails_with_the_last_error(make_trigger, broker, stub):
    stub.script("wf", [Reply(503), Reply(504)])
    execution = drain(broker, services.execution_run_now(trigger=make_trigger(max_attempts=2)))
    assert execution.status == ExecutionStatus.FAILED
    assert [a[0] for a in attempts(execution)] == ["retryable", "failed"]
    assert "HTTP 504" in execution.error


def test_connection_refused_is_retried(make_trigger, broker):
    execution = drain(
        broker, services.execution_run_now(trigger=make_trigger(target="nowhere", max_attempts=2))
    )
    assert execution.status == ExecutionStatus.FAILED
    assert [a[0] for a in attempts(execution)] == ["retryable", "failed"]


def test_a_slow_target_times_out(make_trigger, broker, stub):
    stub.script("wf", [Reply(delay=3)])
    started = time.monotonic()
    execution = drain(
        broker, services.execution_run_now(trigger=make_trigger(timeout_seconds=1, max_attempts=1))
    )
    assert time.monotonic() - started < 2.5, "the call was cut at the trigger's timeout"
    assert execution.status == ExecutionStatus.TIMED_OUT
    assert attempts(execution) == [("timed_out", None, None)]
    assert Trigger.objects.get(pk=execution.trigger_id).failure_count == 1


def test_secrets_never_reach_errors(make_trigger, broker, stub):
    stub.script("wf", [Reply(400, {"error": f"you sent Bearer {SECRET}"})])
    execution = drain(broker, services.execution_run_now(trigger=make_trigger()))
    assert SECRET not in execution.error
    assert SECRET not in Attempt.objects.get(execution=execution).error
    assert SECRET not in Trigger.objects.get(pk=execution.trigger_id).last_error


# --- redelivery and stale messages ------------------------------------------------------------------------


def test_a_stale_message_does_nothing(make_trigger, broker, stub):
    execution = services.execution_run_now(trigger=make_trigger())
    services.execution_launch_attempt(execution_id=execution.pk, task_id="some-older-message")
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.QUEUED
    assert stub.seen() == []


def test_redelivery_waits_for_the_lost_attempt_to_be_provably_dead(make_trigger, broker, stub, monkeypatch):
    """A worker killed mid-call leaves its attempt in flight. The redelivered message starts nothing before
    the attempt's deadline (it re-sends itself to look again), then retires the attempt and retries with
    the same idempotency key."""
    execution = services.execution_run_now(trigger=make_trigger(timeout_seconds=3))
    kill_mid_call(monkeypatch, broker, execution)
    first = broker[-1]

    execution = deliver(broker, execution)  # redelivered at once (reject_on_worker_lost)
    assert execution.status == ExecutionStatus.RUNNING
    assert stub.seen() == [], "no second call while the first may be alive"
    resend = broker[-1]
    assert resend.task_id == first.task_id
    assert 3 < resend.countdown <= 3 + launch.attempt_grace() + 1.5

    Attempt.objects.filter(execution=execution).update(deadline_at=clock.now() - timedelta(seconds=1))
    execution = deliver(broker, execution)
    assert execution.status == ExecutionStatus.SUCCEEDED
    lost, retried = Attempt.objects.filter(execution=execution).order_by("number")
    assert (lost.outcome, lost.exception) == (AttemptOutcome.RETRYABLE, "WorkerLost")
    assert retried.outcome == AttemptOutcome.SUCCEEDED
    assert [r.idempotency_key for r in stub.seen()] == [str(execution.pk)]


def test_a_frozen_worker_cannot_overwrite_what_followed(make_trigger, broker, stub):
    from executions.launchers.base import LaunchResult

    execution = drain(broker, services.execution_run_now(trigger=make_trigger()))
    assert execution.status == ExecutionStatus.SUCCEEDED
    Attempt.objects.filter(execution=execution).update(outcome=AttemptOutcome.RETRYABLE)  # declared lost
    launch._record_attempt(
        execution_id=execution.pk, number=1, result=LaunchResult.failed("late", retryable=False)
    )
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED


# --- cancel -----------------------------------------------------------------------------------------------


def test_cancel_waiting_stops_at_once(make_trigger, broker):
    trigger = make_trigger()
    waiting = Execution.objects.create(
        trigger=trigger,
        origin=ExecutionOrigin.MANUAL,
        status=ExecutionStatus.WAITING,
        requested_at=clock.now(),
    )
    cancelled = services.execution_cancel(execution=waiting, reason="not needed")
    assert (cancelled.status, cancelled.error) == (ExecutionStatus.CANCELLED, "not needed")
    assert broker == []


def test_cancel_queued_means_it_never_launches(make_trigger, broker, stub):
    execution = services.execution_run_now(trigger=make_trigger())
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.QUEUED
    services.execution_cancel(execution=execution)
    execution = deliver(broker, execution)
    assert (execution.status, execution.attempts) == (ExecutionStatus.CANCELLED, 0)
    assert stub.seen() == []


def test_cancel_running_asks_a_cancel_capable_target_to_stop(make_trigger, broker, stub):
    stub.script("wf", [Reply(202, {"runId": "run-77"})])
    trigger = make_trigger(target="async")
    execution = deliver(broker, services.execution_run_now(trigger=trigger))
    assert (execution.status, execution.run_id) == (ExecutionStatus.RUNNING, "run-77")
    cancelled = services.execution_cancel(execution=execution)
    assert cancelled.status == ExecutionStatus.CANCELLED
    assert stub.cancels() == ["run-77"]
    trigger.refresh_from_db()
    assert (trigger.last_status, trigger.failure_count) == ("cancelled", 0)


def test_cancel_during_an_async_launch_call_cancels_the_run_it_started(
    make_trigger, broker, stub, monkeypatch
):
    stub.script("wf", [Reply(202, {"runId": "run-88"})])
    execution = services.execution_run_now(trigger=make_trigger(target="async"))
    real_launch = HttpLauncher.launch

    def cancelled_meanwhile(self, run):
        services.execution_cancel(execution=run)
        return real_launch(self, run)

    monkeypatch.setattr(HttpLauncher, "launch", cancelled_meanwhile)
    execution = deliver(broker, execution)
    assert (execution.status, execution.run_id) == (ExecutionStatus.CANCELLED, "run-88")
    assert Attempt.objects.get(execution=execution).outcome == AttemptOutcome.SUCCEEDED
    assert stub.cancels() == ["run-88"]


def test_cancel_finished_changes_nothing(make_trigger, broker):
    execution = drain(broker, services.execution_run_now(trigger=make_trigger()))
    before = (execution.status, execution.finished_at, execution.error)
    after = services.execution_cancel(execution=execution)
    assert (after.status, after.finished_at, after.error) == before


# --- async end: callback ----------------------------------------------------------------------------------


@pytest.mark.urls(CALLBACK_URLS)
def test_async_run_ends_by_signed_callback(make_trigger, broker, stub, client):
    stub.script("wf", [Reply(202, {"run_id": "r-1"})])
    trigger = make_trigger(target="async")
    execution = deliver(broker, services.execution_run_now(trigger=trigger))
    assert (execution.status, execution.run_id) == (ExecutionStatus.RUNNING, "r-1")

    document = {"status": "succeeded", "result": {"answer": 42}, "runId": "r-1"}
    assert complete(client, execution.pk, document, signature=None).status_code == 403
    assert complete(client, execution.pk, document, signature="t=1,v1=00").status_code == 403
    wrong = signed(json.dumps(document).encode(), secret="not-the-secret")
    assert complete(client, execution.pk, document, signature=wrong).status_code == 403
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.RUNNING, "nothing changed"

    assert complete(client, Execution().pk, document).status_code == 404
    bad = complete(client, execution.pk, {"status": "done"})
    assert (bad.status_code, list(bad.json())) == (400, ["status"])
    assert list(complete(client, execution.pk, {"status": "failed", "error": 7}).json()) == ["error"]
    assert list(complete(client, execution.pk, b"not json").json()) == ["body"]

    answer = complete(client, execution.pk, document)
    assert (answer.status_code, answer.json()["status"]) == (200, "succeeded")
    execution.refresh_from_db()
    assert (execution.status, execution.result) == (ExecutionStatus.SUCCEEDED, {"answer": 42})
    assert complete(client, execution.pk, document, slash="/").status_code == 200, (
        "a retried callback is fine"
    )
    conflict = complete(client, execution.pk, {"status": "failed", "error": "late"})
    assert (conflict.status_code, conflict.json()["status"]) == (409, "succeeded")
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.SUCCEEDED
    trigger.refresh_from_db()
    assert (trigger.last_status, trigger.consecutive_failures) == ("succeeded", 0)


@pytest.mark.urls(CALLBACK_URLS)
def test_a_failed_callback_counts_as_a_failure(make_trigger, broker, stub, client):
    trigger = make_trigger(target="async")
    execution = deliver(broker, services.execution_run_now(trigger=trigger))
    assert complete(client, execution.pk, {"status": "failed", "error": "step 3 broke"}).status_code == 200
    trigger.refresh_from_db()
    assert (trigger.failure_count, trigger.consecutive_failures, trigger.last_error) == (1, 1, "step 3 broke")


# --- sweeper ----------------------------------------------------------------------------------------------


def test_sweeper_times_out_an_async_run_without_an_end(make_trigger, broker, stub):
    stub.script("wf", [Reply(202, {"runId": "r-9"})])
    execution = deliver(
        broker, services.execution_run_now(trigger=make_trigger(target="async", timeout_seconds=5))
    )
    assert services.execution_sweep().timed_out == 0, "not yet past its timeout"
    Execution.objects.filter(pk=execution.pk).update(started_at=clock.now() - timedelta(seconds=6))
    assert services.execution_sweep().timed_out == 1
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.TIMED_OUT
    assert Attempt.objects.get(execution=execution).outcome == AttemptOutcome.TIMED_OUT
    assert stub.cancels() == ["r-9"]
    assert services.execution_sweep().total() == 0, "idempotent"


def test_sweeper_polls_async_runs(make_trigger, broker, stub):
    stub.script("wf", [Reply(202, {"runId": "r-5"})])
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger(target="async")))
    assert services.execution_sweep().completed == 0
    stub.run_states["r-5"] = {"status": "succeeded", "result": {"ok": True}}
    assert services.execution_sweep().completed == 1
    execution.refresh_from_db()
    assert (execution.status, execution.result) == (ExecutionStatus.SUCCEEDED, {"ok": True})


def test_sweeper_requeues_a_lost_message_and_fences_the_old_one(make_trigger, broker, stub):
    execution = services.execution_run_now(trigger=make_trigger())
    overdue = clock.now() - sweep.lost_message_grace() - timedelta(seconds=1)
    Execution.objects.filter(pk=execution.pk).update(queued_at=overdue)
    assert services.execution_sweep().requeued == 1
    assert services.execution_sweep().requeued == 0
    assert len(broker) == 2
    deliver(broker, execution, index=0)
    assert stub.seen() == [], "the lost message, if it ever turns up, is stale"
    assert deliver(broker, execution, index=1).status == ExecutionStatus.SUCCEEDED


def test_sweeper_sends_pending_rows_that_were_never_sent(make_trigger, broker):
    trigger = make_trigger()
    execution = Execution.objects.create(
        trigger=trigger, origin=ExecutionOrigin.MANUAL, requested_at=clock.now()
    )
    Execution.objects.filter(pk=execution.pk).update(updated_at=clock.now() - timedelta(seconds=30))
    assert services.execution_sweep().enqueued == 1
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.QUEUED
    assert [m.execution_id for m in broker] == [str(execution.pk)]


def test_sweeper_hands_a_dead_workers_attempt_to_a_new_one(make_trigger, broker, stub, monkeypatch):
    execution = services.execution_run_now(trigger=make_trigger())
    kill_mid_call(monkeypatch, broker, execution)
    Attempt.objects.filter(execution=execution).update(deadline_at=clock.now() - timedelta(seconds=1))
    assert services.execution_sweep().lost_attempts == 1
    assert deliver(broker, execution).status == ExecutionStatus.SUCCEEDED
    assert [a[0] for a in attempts(execution)] == ["retryable", "succeeded"]


def test_sweeper_promotes_waiting_runs_when_nothing_runs(make_trigger, broker):
    trigger = make_trigger()
    waiting = Execution.objects.create(
        trigger=trigger,
        origin=ExecutionOrigin.MANUAL,
        status=ExecutionStatus.WAITING,
        requested_at=clock.now(),
    )
    assert services.execution_sweep().promoted == 1
    assert Execution.objects.get(pk=waiting.pk).status == ExecutionStatus.QUEUED


# --- manual runs ------------------------------------------------------------------------------------------


def test_run_now_with_an_idempotency_key_is_one_run(make_trigger, broker, user):
    trigger = make_trigger()
    first = services.execution_run_now(
        trigger=trigger, idempotency_key="click-1", requested_by=user, input={"a": 1}
    )
    again = services.execution_run_now(trigger=trigger, idempotency_key="click-1", requested_by=user)
    other = services.execution_run_now(trigger=trigger, idempotency_key="click-2")
    assert again.pk == first.pk
    assert other.pk != first.pk
    assert (first.origin, first.slot, first.input, first.launched_by) == ("manual", None, {"a": 1}, "alice")
    assert first.requested_by == user
    assert first.requested_at is not None
    assert len([m for m in broker if m.execution_id == str(first.pk)]) == 1


def test_concurrent_run_now_with_one_key_makes_one_execution(make_trigger, broker):
    trigger = make_trigger()
    results: list[str] = []
    barrier = threading.Barrier(8)

    def click() -> None:
        try:
            barrier.wait()
            results.append(str(services.execution_run_now(trigger=trigger, idempotency_key="same").pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert len(set(results)) == 1
    assert Execution.objects.filter(trigger=trigger).count() == 1
    assert len(broker) == 1


def test_run_now_validates_its_input(make_trigger):
    trigger = make_trigger()
    with pytest.raises(ValidationError) as excinfo:
        services.execution_run_now(trigger=trigger, input=["not", "an", "object"])
    assert "input" in excinfo.value.message_dict
    with pytest.raises(ValidationError) as excinfo:
        services.execution_run_now(trigger=trigger, idempotency_key="x" * 201)
    assert "idempotency_key" in excinfo.value.message_dict
    trigger_services.trigger_delete(trigger=trigger)
    with pytest.raises(ValidationError) as excinfo:
        services.execution_run_now(trigger=trigger)
    assert "trigger" in excinfo.value.message_dict


def test_rerun_repeats_a_finished_run(make_trigger, broker, user):
    trigger = make_trigger()
    original = drain(broker, services.execution_run_now(trigger=trigger, input={"day": "monday"}))
    rerun = services.execution_rerun(execution=original, requested_by=user)
    assert (rerun.rerun_of_id, rerun.input, rerun.origin) == (original.pk, {"day": "monday"}, "manual")
    assert drain(broker, rerun).status == ExecutionStatus.SUCCEEDED
    unfinished = services.execution_run_now(trigger=trigger)
    with pytest.raises(ValidationError):
        services.execution_rerun(execution=unfinished)


# --- priority, other launchers ----------------------------------------------------------------------------


def test_launch_messages_carry_the_broker_priority(make_trigger, redis_client):
    """Read off the real broker: the launch queue's priority lists (0 is the bare name on Redis)."""
    runs = {
        priority: services.execution_run_now(trigger=make_trigger(workflow_id=priority, priority=priority))
        for priority in ("urgent", "low")
    }

    def calls(queue: str) -> list[tuple[str, list]]:
        found = []
        for raw in redis_client.lrange(queue, 0, -1):
            message = json.loads(raw)
            args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
            found.append((message["headers"]["task"], args))
        return found

    assert calls("launch") == [("executions.launch", [str(runs["urgent"].pk)])], "ids only"
    assert calls("launch:9") == [("executions.launch", [str(runs["low"].pk)])]


def test_follow_ups_of_a_run_are_served_ahead_of_fresh_launches(make_trigger, broker):
    """A retry goes out urgent whatever the trigger's priority: behind a herd of fresh launches it would
    wait the herd out instead of its backoff. The first launch keeps the trigger's own priority."""
    execution = services.execution_run_now(trigger=make_trigger(target="nowhere", priority="low"))
    assert [m.priority for m in broker] == ["low"]
    execution = deliver(broker, execution)  # connection refused: retryable
    assert execution.status == ExecutionStatus.QUEUED
    first, retry = broker
    assert retry.priority == "urgent"
    assert retry.countdown > 0
    assert retry.task_id != first.task_id


def test_one_launch_attempt_costs_a_small_fixed_number_of_statements(make_trigger, broker):
    """Claim (locks, the attempt row, the run) and record (locks, the attempt, the end, the trigger's
    counters, the next waiting slot), whatever the history's size: no per-row or per-attempt reads."""
    trigger = make_trigger(target="default", workflow_id="hello", max_attempts=1)
    for _ in range(30):  # history the attempt must not read through
        deliver(broker, services.execution_run_now(trigger=trigger))
    execution = services.execution_run_now(trigger=trigger)
    with CaptureQueriesContext(connection) as queries:
        execution = deliver(broker, execution)
    assert execution.status == ExecutionStatus.SUCCEEDED
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")
    statements = [q["sql"] for q in queries if not q["sql"].startswith(control)]
    # 14 for the attempt (7 to claim, the owner's credit standing among them; 7 to record), 1 for the test
    # reading the row back.
    assert len(statements) <= 15, "\n".join(sql[:160] for sql in statements)


def test_a_broker_refusal_leaves_the_row_pending_for_the_sweeper(make_trigger, monkeypatch, frozen_clock):
    from toolkit import broker

    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(broker, "publish_batch", refuse)
    execution = services.execution_run_now(trigger=make_trigger())
    assert Execution.objects.get(pk=execution.pk).status == ExecutionStatus.PENDING
    hourly = make_trigger(workflow_id="hourly")
    slot = trigger_services.trigger_next_slot(trigger=hourly, after=frozen_clock.now())
    frozen_clock.set(slot)
    fired = services.execution_fire_batch(fires=[services.Fire(hourly.pk, slot)])
    assert [Execution.objects.get(pk=e.pk).status for e in fired] == [ExecutionStatus.PENDING]
    assert Execution.objects.get(pk=fired[0].pk).task_id == ""


def test_demo_and_python_targets_end_synchronously(make_trigger, broker):
    flaky = make_trigger(target="default", workflow_id="flaky", max_attempts=1)
    execution = drain(broker, services.execution_run_now(trigger=flaky))
    expected = demo.plan("flaky", str(execution.pk), 1)
    assert execution.status == (ExecutionStatus.SUCCEEDED if expected.succeeds else ExecutionStatus.FAILED)
    python = make_trigger(target="python", workflow_id="anything")
    execution = drain(broker, services.execution_run_now(trigger=python, input={"x": 1}))
    assert (execution.status, execution.result) == (
        ExecutionStatus.SUCCEEDED,
        {"echo": {"x": 1}, "attempt": 1},
    )


def test_celery_target_is_polled_from_the_result_backend(make_trigger, broker, monkeypatch):
    from django_celery_results.models import TaskResult

    from scheduler_project.celery import app

    sent: list[dict] = []

    class Sent:
        def __init__(self, task_id: str) -> None:
            self.id = task_id

    monkeypatch.setattr(
        app, "send_task", lambda name, **kw: sent.append({"name": name, **kw}) or Sent(kw["task_id"])
    )
    execution = deliver(broker, services.execution_run_now(trigger=make_trigger(target="celery")))
    assert (execution.status, execution.run_id) == (ExecutionStatus.RUNNING, str(execution.pk))
    (message,) = sent
    assert (message["name"], message["queue"]) == ("flows.report", "reports")
    assert message["kwargs"]["idempotency_key"] == str(execution.pk)
    assert services.execution_sweep().completed == 0, "no result yet"
    TaskResult.objects.create(
        task_id=execution.run_id, status="SUCCESS", result=json.dumps({"pages": 12}),
        content_type="application/json", content_encoding="utf-8",
    )  # fmt: skip
    assert services.execution_sweep().completed == 1
    execution.refresh_from_db()
    assert (execution.status, execution.result) == (ExecutionStatus.SUCCEEDED, {"pages": 12})
