"""What monitoring (Flower) is told about launches: a launch task's state follows what its attempt came to
(FAILURE when the run failed for good, RETRY when it will be tried again, SUCCESS otherwise) and every launch
message names its run in words. The database stays the record: these tests check that reporting changes
none of it. tests/e2e/test_flower_launches.py sees the same through a real worker and Flower."""

from __future__ import annotations

import ast
from datetime import timedelta

import pytest

from executions import services, tasks
from executions.models import Attempt, AttemptOutcome, Execution, ExecutionOrigin, ExecutionStatus
from executions.services import dispatch
from tests.integration import test_launch
from tests.integration.test_launch import Message
from tests.integration.test_launch_stub import Reply
from tests.support.broker import launch_messages
from toolkit import clock

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The launch tests' fixtures: a broker that is a list, a local HTTP target, triggers on it.
broker, stub, targets, make_trigger = (
    test_launch.broker, test_launch.stub, test_launch.targets, test_launch.make_trigger
)  # fmt: skip
fast_passwords = test_launch.fast_passwords


def launch_now(execution: Execution, broker: list[Message]):
    """Run the launch task in this process on the run's current message, as a worker would."""
    message = [m for m in broker if m.execution_id == str(execution.pk)][-1]
    return tasks.launch.apply(args=[message.execution_id], task_id=message.task_id)


def test_a_run_that_fails_for_good_is_a_failed_task(make_trigger, broker):
    trigger = make_trigger(target="default", workflow_id="broken")
    execution = services.execution_run_now(trigger=trigger)
    outcome = launch_now(execution, broker)
    assert outcome.state == "FAILURE"
    assert isinstance(outcome.result, tasks.LaunchFailed)
    assert "t-broken" in str(outcome.result)
    assert "workflow broken" in str(outcome.result)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED, "the record is the service's, unchanged by the report"
    assert list(Attempt.objects.filter(execution=execution).values_list("outcome", flat=True)) == [
        AttemptOutcome.FAILED
    ]
    assert tasks.LaunchFailed in tasks.launch.throws, "expected: logged without a traceback"
    assert tasks.launch.acks_late
    assert tasks.launch.acks_on_failure, "a failed run's message is acked, not redelivered"
    assert not isinstance(outcome.result, tasks.launch.autoretry_for), "Celery does not retry it itself"


def test_an_attempt_that_will_be_retried_is_a_retried_task(make_trigger, broker, stub):
    stub.script("wf-retry", [Reply(503), Reply(200)])
    execution = services.execution_run_now(trigger=make_trigger(workflow_id="wf-retry"))
    outcome = launch_now(execution, broker)
    assert outcome.state == "RETRY"
    assert isinstance(outcome.result.exc, tasks.LaunchWillRetry)
    assert "t-wf-retry" in str(outcome.result)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.QUEUED
    retry = [m for m in broker if m.execution_id == str(execution.pk)]
    assert len(retry) == 2, "one new message, the service's own (Celery sends none for a raised Retry)"
    assert retry[-1].task_id == execution.task_id != retry[0].task_id
    assert launch_now(execution, broker).state == "SUCCESS"
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.SUCCEEDED


def test_a_lost_last_attempt_retired_by_its_redelivery_is_a_failed_task(make_trigger, broker, monkeypatch):
    """A worker killed mid-call on the last attempt: the redelivered message, past the attempt's deadline,
    records it lost and fails the run, and says so as FAILURE."""
    execution = services.execution_run_now(trigger=make_trigger(max_attempts=1, timeout_seconds=3))
    test_launch.kill_mid_call(monkeypatch, broker, execution)
    Attempt.objects.filter(execution=execution).update(deadline_at=clock.now() - timedelta(seconds=1))
    outcome = launch_now(execution, broker)
    assert outcome.state == "FAILURE"
    assert "the worker making this attempt stopped" in str(outcome.result)
    execution.refresh_from_db()
    assert execution.status == ExecutionStatus.FAILED


def test_a_stale_message_is_a_successful_task_that_says_so(make_trigger, broker):
    execution = services.execution_run_now(trigger=make_trigger(target="default", workflow_id="hello"))
    outcome = tasks.launch.apply(args=[str(execution.pk)], task_id="not-the-current-message")
    assert outcome.state == "SUCCESS"
    assert "nothing to do" in outcome.result


def test_a_successful_launch_names_its_run_in_the_result(make_trigger, broker):
    trigger = make_trigger(target="default", workflow_id="hello")
    execution = services.execution_run_now(trigger=trigger)
    outcome = launch_now(execution, broker)
    assert outcome.state == "SUCCESS"
    assert "trigger t-hello, workflow hello, slot manual" in outcome.result
    assert "succeeded" in outcome.result


def test_launch_messages_name_trigger_workflow_and_slot(make_trigger, redis_client):
    trigger = make_trigger(target="default", workflow_id="etl")
    execution = services.execution_run_now(trigger=trigger)
    (headers,) = launch_messages(redis_client)
    assert headers["task"] == "executions.launch"
    assert ast.literal_eval(headers["argsrepr"]) == [str(execution.pk)], "the arguments stay ids only"
    assert ast.literal_eval(headers["kwargsrepr"]) == {
        "trigger": "t-etl",
        "workflow": "etl",
        "slot": "manual",
    }


def test_a_launch_batch_names_its_runs(make_trigger, redis_client, settings):
    settings.SCHEDULER_LAUNCH_BATCH_SIZE = 50
    slot = clock.now().replace(microsecond=0) - timedelta(minutes=1)
    pks = []
    for n in range(7):
        trigger = make_trigger(target="default", workflow_id=f"hello-{n}")
        row = Execution.objects.create(
            trigger=trigger, origin=ExecutionOrigin.SCHEDULE, status=ExecutionStatus.PENDING, slot=slot
        )
        pks.append(row.pk)
    assert dispatch.execution_enqueue_many(execution_ids=pks) == 7
    (headers,) = launch_messages(redis_client)
    assert headers["task"] == "executions.launch_batch"
    shown = ast.literal_eval(headers["kwargsrepr"])
    assert shown["runs"] == 7
    assert len(shown["triggers"]) == dispatch.BATCH_LABEL_NAMES + 1
    assert shown["triggers"][-1] == "+2 more"
    assert all(f"@ {slot:%Y-%m-%dT%H:%M:%SZ}" in named for named in shown["triggers"][:-1])
