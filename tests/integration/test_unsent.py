"""The unsent ledger: a fire batch's rows go in already queued under their launch messages' task ids, so a
process that dies between the commit and the publish would leave them queued under messages nobody sent.
The batch notes them in the broker's Redis before it commits; the sweeper resends what a note still names
once it has stood past UNSENT_GRACE, instead of waiting out the broker's visibility timeout. Real Redis, real
database; "dying" is a commit whose after-commit publish never runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from executions.models import Execution, ExecutionStatus
from executions.services import Fire, execution_fire_batch, execution_sweep
from executions.services.sweep import UNSENT_GRACE
from schedules import services
from tests.support.broker import launch_messages
from toolkit import broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def broker_kept_its_messages(redis_client, settings) -> None:
    """The broker's marker is in place (its first look would say "lost everything" and resend it all)."""
    broker.broker_lost_messages(settings.CELERY_BROKER_URL)


@pytest.fixture
def triggers(user, frozen_clock):
    frozen_clock.set(T0 - timedelta(seconds=30))
    return [
        services.trigger_register(owner=user, name=f"t{n}", workflow_id="wf", cron_expression="* * * * *")
        for n in range(3)
    ]


def fire_all(triggers) -> list[Execution]:
    return execution_fire_batch(fires=[Fire(t.pk, T0) for t in triggers])


def notes(redis_client) -> list[bytes]:
    return redis_client.zrange(broker.UNSENT_KEY, 0, -1)


def test_a_batch_that_died_before_publishing_is_resent_by_the_sweeper(
    triggers, frozen_clock, redis_client, django_capture_on_commit_callbacks
):
    frozen_clock.set(T0 + timedelta(milliseconds=50))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        created = fire_all(triggers)
    assert callbacks, "the publish waits for the commit ... and never runs: the process died"
    before = {row.pk: row.task_id for row in Execution.objects.all()}
    assert {row.status for row in Execution.objects.all()} == {ExecutionStatus.QUEUED}
    assert len(notes(redis_client)) == 1
    assert launch_messages(redis_client) == []

    frozen_clock.set(T0 + UNSENT_GRACE - timedelta(seconds=1))
    assert execution_sweep().unsent == 0, "a publish may still be on its way"

    frozen_clock.set(T0 + UNSENT_GRACE + timedelta(seconds=1))
    assert execution_sweep().unsent == len(created)
    after = {row.pk: row.task_id for row in Execution.objects.all()}
    assert all(after[pk] != before[pk] for pk in before), "a new task id fences any late first message"
    sent = {(m["task"], m["id"]) for m in launch_messages(redis_client)}
    assert sent == {("executions.launch", task_id) for task_id in after.values()}
    assert notes(redis_client) == []
    assert execution_sweep().unsent == 0, "once"


def test_a_batch_that_published_leaves_no_note(
    triggers, frozen_clock, redis_client, django_capture_on_commit_callbacks
):
    frozen_clock.set(T0 + timedelta(milliseconds=50))
    with django_capture_on_commit_callbacks(execute=True):
        fire_all(triggers)
    assert notes(redis_client) == []
    assert len(launch_messages(redis_client)) >= 1
    frozen_clock.set(T0 + UNSENT_GRACE * 3)
    assert execution_sweep().unsent == 0


def test_a_row_that_moved_on_is_not_resent(
    triggers, frozen_clock, redis_client, django_capture_on_commit_callbacks
):
    frozen_clock.set(T0 + timedelta(milliseconds=50))
    with django_capture_on_commit_callbacks(execute=False):
        first, second, third = fire_all(triggers)
    # Its message went out after all and a worker took it; another sender resent the next one.
    Execution.objects.filter(pk=first.pk).update(status=ExecutionStatus.RUNNING)
    Execution.objects.filter(pk=second.pk).update(task_id="resent-by-someone-else")
    frozen_clock.set(T0 + UNSENT_GRACE * 2)
    assert execution_sweep().unsent == 1
    assert Execution.objects.get(pk=second.pk).task_id == "resent-by-someone-else"
    assert Execution.objects.get(pk=third.pk).task_id != third.task_id
    assert notes(redis_client) == []


def test_a_note_of_rows_that_never_committed_is_dropped(triggers, frozen_clock, redis_client):
    broker.note_unsent(
        [("00000000-0000-0000-0000-000000000001", "t1"), ("not-an-id", "t2")], at=T0.timestamp()
    )
    frozen_clock.set(T0 + UNSENT_GRACE * 2)
    assert execution_sweep().unsent == 0
    assert notes(redis_client) == []
