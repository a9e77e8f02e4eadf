"""Per-trigger history limits against the real database: `keep_succeeded` / `keep_failed` keep the newest N
runs of each kind, in bounded batches, never a run still going, never another trigger's or another kind's
runs; beside the age retention in the daily task and the command; the fields in the API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import tasks
from executions.models import Execution, ExecutionOrigin
from executions.services import execution_prune_history
from schedules import services
from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
S, F, T, C, K = "succeeded", "failed", "timed_out", "cancelled", "skipped"


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def make(user, frozen_clock):
    frozen_clock.set(T0)

    def build(**fields) -> Trigger:
        values = {"name": "h", "workflow_id": "wf", "cron_expression": "* * * * *", **fields}
        return services.trigger_register(owner=user, **values)

    return build


def history(trigger: Trigger, statuses: list[str], *, hours_ago: int = 1) -> list[Execution]:
    """Runs recorded a minute apart, oldest first, with the given states, ending `hours_ago` before T0."""
    rows = []
    for n, status in enumerate(statuses):
        when = T0 - timedelta(hours=hours_ago, minutes=len(statuses) - n)
        row = Execution.objects.create(
            trigger=trigger, slot=when, fire_at=when, origin=ExecutionOrigin.SCHEDULE, status=status
        )
        Execution.objects.filter(pk=row.pk).update(created_at=when)
        rows.append(row)
    return rows


def left(trigger: Trigger) -> list[str]:
    return list(
        Execution.objects.filter(trigger=trigger).order_by("created_at").values_list("status", flat=True)
    )


def test_the_newest_n_of_each_kind_stay(make):
    trigger = make(keep_succeeded=2, keep_failed=1)
    history(trigger, [S, F, S, "running", T, S, C, K, F, S, "waiting", "queued", S])
    assert execution_prune_history() == 5
    # Kept: succeeded 2 newest, failed/timed-out 1 newest; cancelled, skipped and unfinished untouched.
    assert left(trigger) == ["running", C, K, F, S, "waiting", "queued", S]


def test_only_triggers_with_a_limit_and_only_their_kind(make):
    limited = make(keep_failed=1)
    unlimited = make(name="u")
    history(limited, [S, S, F, F, F])
    history(unlimited, [F, F, F])
    assert execution_prune_history() == 2
    assert left(limited) == [S, S, F]
    assert left(unlimited) == [F, F, F]


def test_runs_still_going_are_never_deleted(make):
    trigger = make(keep_succeeded=1, keep_failed=1)
    going = history(trigger, ["pending", "queued", "running", "waiting"] * 3)
    assert execution_prune_history() == 0
    assert Execution.objects.filter(pk__in=[e.pk for e in going]).count() == 12


def test_pruning_goes_in_bounded_batches(make):
    trigger = make(keep_succeeded=3)
    history(trigger, [S] * 25)
    with CaptureQueriesContext(connection) as queries:
        assert execution_prune_history(batch_size=10) == 22
    assert left(trigger) == [S, S, S]
    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "executions_execution"')]
    assert len(deletes) == 3, "22 rows beyond the limit in batches of 10: three deletes"


def test_dry_run_counts_and_deletes_nothing(make):
    trigger = make(keep_succeeded=1)
    history(trigger, [S, S, S])
    assert execution_prune_history(dry_run=True) == 2
    assert len(left(trigger)) == 3


def test_the_daily_task_and_the_command_apply_them_beside_the_age(make):
    trigger = make(keep_succeeded=1)
    oldest, *_rest = history(trigger, [S, S, S], hours_ago=2)
    Execution.objects.filter(pk=oldest.pk).update(finished_at=T0 - timedelta(days=200))
    assert tasks.prune() == 2, "one by age, one beyond the limit"
    assert left(trigger) == [S]
    history(trigger, [S, S])
    out = StringIO()
    call_command("prune_executions", "--older-than", "90d", stdout=out)
    assert "beyond their trigger's history limits" in out.getvalue()
    assert len(left(trigger)) == 1


def test_the_api_sets_and_validates_them(user, frozen_clock):
    frozen_clock.set(T0)
    api = client_for(user)
    body = {"name": "n", "workflow_id": "wf", "cron_expression": "* * * * *", "keep_succeeded": 10}
    created = api.post("/api/v1/triggers/", body, format="json")
    assert created.status_code == 201, created.content
    assert (created.json()["keep_succeeded"], created.json()["keep_failed"]) == (10, None)
    bad = api.patch(f"/api/v1/triggers/{created.json()['id']}/", {"keep_failed": 0}, format="json")
    assert bad.status_code == 400
    assert bad.json() == {"keep_failed": ["must be between 1 and 1000000"]}
