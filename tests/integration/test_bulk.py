"""`toolkit.bulk` against the real database: an insert that lets the unique key decide and names the rows
it kept, and an update of many rows to their own values, optionally as a compare-and-set — on PostgreSQL
through `unnest` (one constant statement), elsewhere through the ORM; the rows end up the same."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions.models import Execution, ExecutionStatus
from schedules import services as trigger_services
from toolkit import bulk

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def trigger(user):
    return trigger_services.trigger_register(
        owner=user, name="bulk", workflow_id="wf", cron_expression="* * * * *"
    )


def _row(trigger, minute: int, **fields) -> Execution:
    slot = T0 + timedelta(minutes=minute)
    return Execution(
        trigger=trigger,
        slot=slot,
        fire_at=slot,
        origin="schedule",
        priority="medium",
        input={"nested": ["it's", {"quote": '"{}"'}], "n": minute},
        **fields,
    )


def test_insert_new_keeps_what_the_unique_key_allows_and_names_it(trigger):
    first = [_row(trigger, m) for m in range(5)]
    assert bulk.insert_new(first) == {row.pk for row in first}
    # Two of these take slots already recorded: the unique (trigger, slot) key turns them into nothing.
    again = [_row(trigger, m) for m in (3, 4, 5, 6)]
    assert bulk.insert_new(again) == {again[2].pk, again[3].pk}
    assert Execution.objects.filter(trigger=trigger).count() == 7
    stored = Execution.objects.get(pk=first[2].pk)
    assert stored.input == first[2].input  # JSON written as the field writes it
    assert stored.status == ExecutionStatus.PENDING
    assert stored.slot == T0 + timedelta(minutes=2)
    assert stored.created_at is not None
    assert first[2].created_at == stored.created_at
    assert bulk.insert_new([]) == set()


def test_insert_new_is_one_statement_whatever_the_number_of_rows(trigger):
    if connection.vendor != "postgresql":
        pytest.skip("the ORM fallback (SQLite) splits by its parameter limit")
    for count in (3, 300):
        rows = [_row(trigger, 1000 * count + m) for m in range(count)]
        with CaptureQueriesContext(connection) as queries:
            bulk.insert_new(rows)
        assert len(queries) == 1


def test_update_each_writes_each_row_its_own_values(trigger):
    rows = [_row(trigger, m) for m in range(4)]
    bulk.insert_new(rows)
    for n, row in enumerate(rows):
        row.error, row.attempts = f"error {n}", n
    assert bulk.update_each(rows[:3], ["error", "attempts"]) == {row.pk for row in rows[:3]}
    stored = {e.pk: (e.error, e.attempts) for e in Execution.objects.filter(trigger=trigger)}
    assert stored == {
        rows[0].pk: ("error 0", 0),
        rows[1].pk: ("error 1", 1),
        rows[2].pk: ("error 2", 2),
        rows[3].pk: ("", 0),
    }


def test_update_each_only_if_claims_only_the_rows_that_still_hold(trigger):
    rows = [_row(trigger, m) for m in range(4)]
    bulk.insert_new(rows)
    Execution.objects.filter(pk=rows[1].pk).update(status=ExecutionStatus.QUEUED, task_id="someone-else")
    now = T0 + timedelta(hours=1)
    claims = [
        Execution(
            pk=row.pk, status=ExecutionStatus.QUEUED, task_id=f"mine-{n}", queued_at=now, updated_at=now
        )
        for n, row in enumerate(rows)
    ]
    fields = ["status", "task_id", "queued_at", "updated_at"]
    held = bulk.update_each(claims, fields, only_if={"status": ExecutionStatus.PENDING})
    assert held == {rows[0].pk, rows[2].pk, rows[3].pk}
    assert Execution.objects.get(pk=rows[1].pk).task_id == "someone-else"
    assert Execution.objects.get(pk=rows[3].pk).task_id == "mine-3"
    # A second claim of the same rows finds none pending.
    assert bulk.update_each(claims, fields, only_if={"status": ExecutionStatus.PENDING}) == set()
    assert bulk.update_each([], fields) == set()


def test_unknown_rows_are_not_claimed(trigger):
    ghost = Execution(pk=uuid.uuid4(), status=ExecutionStatus.QUEUED, task_id="x")
    assert bulk.update_each([ghost], ["status", "task_id"], only_if={"status": "pending"}) == set()
