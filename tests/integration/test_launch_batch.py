"""The batch launch path against the real database, the real demo target and a refusing HTTP target: a
batch of first attempts ends exactly as the same attempts made one message at a time — statuses, attempt
rows, errors and trigger counters — including rows it must leave alone (stale, finished, waiting); and the
fire path hands fresh runs to it in messages of the configured size, on the real broker."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from executions import services
from executions.models import Attempt, Execution, ExecutionOrigin, ExecutionStatus
from schedules import services as trigger_services
from schedules.models import Trigger
from tests.support.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TASK = "batch-message-1"


@pytest.fixture(autouse=True)
def targets(settings) -> None:
    settings.SCHEDULER_TARGETS = {
        "demo": {"kind": "demo", "speed": 0},
        "nowhere": {"kind": "http", "url": f"http://127.0.0.1:{free_port()}/runs"},
    }


class Rollback(Exception):
    pass


def world(user) -> list[uuid.UUID]:
    """Runs a launch message may meet: fresh ones on workflows that succeed, fail retryably or fatally, a
    refused HTTP call (retry), a trigger whose runs end differently in one batch, a queue-policy trigger
    with a slot waiting behind its queued run (promoted when it ends), and rows to leave alone: stale
    (another task id), finished, waiting."""
    ids = []
    queued = ExecutionStatus.QUEUED
    kinds: list[tuple[tuple[str, str, str, str], ...]] = [
        (("hello", "demo", queued, TASK),) * 2,
        (("flaky", "demo", queued, TASK),) * 2,
        (("broken", "demo", queued, TASK),) * 2,
        (("etl", "demo", queued, TASK),) * 2,
        (("any", "nowhere", queued, TASK),) * 2,
        (("hello", "demo", queued, "some-newer-message"),) * 2,
        (("hello", "demo", ExecutionStatus.SUCCEEDED, TASK),) * 2,
        (("hello", "demo", ExecutionStatus.WAITING, ""),) * 2,
        (("flaky", "demo", queued, TASK),) * 5,
        (("hello", "demo", queued, TASK), ("hello", "demo", ExecutionStatus.WAITING, "")),
    ]
    for n, rows in enumerate(kinds):
        trigger = trigger_services.trigger_register(
            owner=user, id=uuid.UUID(int=n + 1), name=f"t{n}", workflow_id=rows[0][0], target=rows[0][1],
            cron_expression="0 0 1 1 *", max_attempts=2, backoff_seconds=1, overlap_policy="queue",
        )  # fmt: skip
        for m, (_workflow, _target, status, task_id) in enumerate(rows):
            execution = Execution.objects.create(
                id=uuid.UUID(int=1000 + 10 * n + m),
                trigger=trigger,
                origin=ExecutionOrigin.MANUAL,
                status=status,
                task_id=task_id,
                priority=trigger.priority,
            )
            if not (n == 9 and status == ExecutionStatus.WAITING):  # promoted later: its own message then
                ids.append(execution.pk)
    return ids


def snapshot() -> dict[str, Any]:
    runs = sorted(
        (
            str(e.pk),
            e.status,
            e.attempts,
            e.error,
            e.run_id,
            e.not_before is not None,
            e.started_at,
            e.finished_at,
            e.duration_ms,
            json.dumps(e.result, sort_keys=True),
        )
        for e in Execution.objects.all()
    )
    attempts = sorted(
        (
            str(a.execution_id),
            a.number,
            a.outcome,
            a.http_status,
            a.exception,
            a.error,
            a.finished_at,
            a.retry_delay_seconds is not None,  # jittered
        )
        for a in Attempt.objects.all()
    )
    triggers = sorted(
        (
            str(t.pk),
            t.last_status,
            t.failure_count,
            t.consecutive_failures,
            t.last_error,
            t.last_run_at,
            t.run_count,
        )
        for t in Trigger.objects.all()
    )
    return {"runs": runs, "attempts": attempts, "triggers": triggers}


def run(user, frozen_clock, *, batch: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            frozen_clock.set(T0)
            ids = world(user)
            frozen_clock.set(T0 + timedelta(seconds=1))
            if batch:
                services.execution_launch_batch(execution_ids=ids, task_id=TASK)
            else:
                for pk in ids:
                    services.execution_launch_attempt(execution_id=pk, task_id=TASK)
            result = snapshot()
            raise Rollback
    except Rollback:
        pass
    return result


@pytest.mark.parametrize("window", [0.0, 2.0], ids=["each-as-it-returns", "all-together"])
def test_a_batch_ends_each_run_as_one_message_each_would(user, frozen_clock, settings, window) -> None:
    settings.SCHEDULER_LAUNCH_RECORD_WINDOW = window
    one_by_one = run(user, frozen_clock, batch=False)
    batched = run(user, frozen_clock, batch=True)
    assert batched == one_by_one
    outcomes = {status for _pk, status, *_ in batched["runs"]}
    assert {"succeeded", "failed", "queued", "waiting"} <= outcomes, "the mix reached every kind of end"
    assert len(batched["attempts"]) == 16, "each fresh run attempted once; stale, finished, waiting: none"
    mixed = {status for pk, status, *_ in batched["runs"] if 1080 <= uuid.UUID(pk).int < 1085}
    assert {"succeeded", "queued"} <= mixed, "one trigger's runs ended differently in the same batch"
    promoted = {pk: status for pk, status, *_ in batched["runs"] if uuid.UUID(pk).int in (1090, 1091)}
    assert list(promoted.values()) == ["succeeded", "pending"], "the waiting slot started when its run ended"


def test_a_batch_costs_the_same_statements_whatever_its_size(user, frozen_clock, settings) -> None:
    """Succeeded runs that return together are recorded in bulk: the statements of a batch do not grow
    with the number of runs in it (one message at a time costs ~10 per run)."""
    settings.SCHEDULER_LAUNCH_RECORD_WINDOW = 2.0
    frozen_clock.set(T0)
    ids = []
    for n in range(20):
        trigger = trigger_services.trigger_register(
            owner=user, name=f"q{n}", workflow_id="hello", target="demo", cron_expression="0 0 1 1 *"
        )
        ids.append(
            Execution.objects.create(
                trigger=trigger, origin=ExecutionOrigin.MANUAL, status=ExecutionStatus.QUEUED, task_id=TASK
            ).pk
        )
    counts = []
    for part in (ids[:4], ids[4:]):
        with CaptureQueriesContext(connection) as queries:
            assert len(services.execution_launch_batch(execution_ids=part, task_id=TASK)) == len(part)
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 17, counts  # 17: with the owners' credit standing, one grouped read
    assert set(Execution.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"succeeded"}
    assert Trigger.objects.filter(last_status="succeeded").count() == 20


def test_a_redelivered_batch_makes_no_second_attempt(user, frozen_clock) -> None:
    frozen_clock.set(T0)
    ids = world(user)[:2]
    first = services.execution_launch_batch(execution_ids=ids, task_id=TASK)
    again = services.execution_launch_batch(execution_ids=ids, task_id=TASK)
    assert (len(first), len(again)) == (2, 0)
    assert Attempt.objects.filter(execution_id__in=ids).count() == 2


def test_the_fire_path_sends_fresh_runs_in_batches_of_the_configured_size(
    user, frozen_clock, settings, redis_client, django_capture_on_commit_callbacks
) -> None:
    settings.SCHEDULER_LAUNCH_BATCH_SIZE = 3
    frozen_clock.set(T0)
    triggers = [
        trigger_services.trigger_register(
            owner=user, name=f"h{n}", workflow_id="hello", target="demo", cron_expression="*/10 * * * * *"
        )
        for n in range(7)
    ]
    frozen_clock.set(T0 + timedelta(seconds=10.2))
    with django_capture_on_commit_callbacks(execute=True):
        created = services.execution_fire_batch(
            fires=[services.Fire(t.pk, T0 + timedelta(seconds=10)) for t in triggers]
        )
    messages = [json.loads(raw) for raw in redis_client.lrange("launch:6", 0, -1)]
    assert {m["headers"]["task"] for m in messages} == {"executions.launch_batch"}
    batches = {m["headers"]["id"]: json.loads(base64.b64decode(m["body"]))[0][0] for m in messages}
    assert sorted(len(ids) for ids in batches.values()) == [1, 3, 3]
    rows = {str(e.pk): e for e in Execution.objects.filter(pk__in=[c.pk for c in created])}
    for task_id, ids in batches.items():
        assert {rows[pk].task_id for pk in ids} == {task_id}, "each row carries its batch's task id"
        assert {rows[pk].status for pk in ids} == {ExecutionStatus.QUEUED}


def test_a_fast_run_is_recorded_while_a_slow_one_of_its_batch_is_still_going(user, settings) -> None:
    """An attempt's deadline is its own timeout plus a grace: its outcome must not wait for a neighbour."""
    settings.SCHEDULER_TARGETS = {"demo": {"kind": "demo", "speed": 0.05}}  # slow: 20 s -> 1 s
    runs = {}
    for workflow in ("hello", "slow"):
        trigger = trigger_services.trigger_register(
            owner=user, name=workflow, workflow_id=workflow, target="demo", cron_expression="0 0 1 1 *"
        )
        runs[workflow] = Execution.objects.create(
            trigger=trigger, origin=ExecutionOrigin.MANUAL, status=ExecutionStatus.QUEUED, task_id=TASK
        )
    assert (
        len(services.execution_launch_batch(execution_ids=[r.pk for r in runs.values()], task_id=TASK)) == 2
    )
    hello, slow = (Execution.objects.get(pk=runs[w].pk) for w in ("hello", "slow"))
    assert (hello.status, slow.status) == (ExecutionStatus.SUCCEEDED, ExecutionStatus.SUCCEEDED)
    assert (slow.finished_at - hello.finished_at).total_seconds() > 0.5


def test_ids_that_are_not_ids_are_dropped_and_the_rest_launch(user, frozen_clock) -> None:
    frozen_clock.set(T0)
    good = world(user)[0]
    made = services.execution_launch_batch(execution_ids=["not-a-uuid", str(good), None], task_id=TASK)
    assert len(made) == 1
    assert Execution.objects.get(pk=good).status == ExecutionStatus.SUCCEEDED


def test_a_poisoned_fire_costs_only_itself(user, frozen_clock) -> None:
    from executions import tasks

    frozen_clock.set(T0)
    triggers = [
        trigger_services.trigger_register(
            owner=user, name=f"p{n}", workflow_id="hello", target="demo", cron_expression="*/10 * * * * *"
        )
        for n in range(3)
    ]
    frozen_clock.set(T0 + timedelta(seconds=10.2))
    slot = "2026-03-02T12:00:10+00:00"
    tasks.fire_batch.run(
        [
            [str(triggers[0].pk), slot, "schedule"],
            ["not", "enough"],
            [str(triggers[1].pk), "not-a-date", "schedule"],
            [str(triggers[1].pk), "2026-03-02T12:00:10", "schedule"],  # no offset
            [str(triggers[2].pk), slot, "schedule"],
        ]
    )
    recorded = set(Execution.objects.values_list("trigger_id", flat=True))
    assert recorded == {triggers[0].pk, triggers[2].pk}
    # And inside the service: a fire it cannot use (a naive slot) is dropped, its batch-mates are not.
    naive = services.Fire(triggers[1].pk, datetime(2026, 3, 2, 12, 0, 10))  # noqa: DTZ001 - the poison
    good = services.Fire(triggers[0].pk, T0 + timedelta(seconds=20))
    frozen_clock.set(T0 + timedelta(seconds=20.2))
    created = services.execution_fire_batch(fires=[naive, good])
    assert [(e.trigger_id, e.slot) for e in created] == [(triggers[0].pk, T0 + timedelta(seconds=20))]
    assert Trigger.objects.get(pk=triggers[1].pk).run_count == 0
