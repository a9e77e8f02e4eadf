"""Retention: `manage.py prune_executions` and the daily `executions.prune` task delete old finished runs and
nothing else; trigger counters survive."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from executions import policies, tasks
from executions.models import Attempt, Execution, ExecutionOrigin, ExecutionStatus
from schedules import services as trigger_services
from schedules.models import Trigger
from toolkit import clock

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def trigger(user) -> Trigger:
    trigger = trigger_services.trigger_register(
        owner=user, name="p", workflow_id="wf", cron_expression="0 9 * * *"
    )
    Trigger.objects.filter(pk=trigger.pk).update(
        run_count=7, failure_count=2, consecutive_failures=1, last_status="failed", last_error="boom"
    )
    return trigger


def aged(trigger: Trigger, status: str, *, age: timedelta) -> Execution:
    when = clock.now() - age
    execution = Execution.objects.create(
        trigger=trigger, origin=ExecutionOrigin.MANUAL, requested_at=when, status=status, started_at=when
    )
    if execution.is_finished:
        Execution.objects.filter(pk=execution.pk).update(finished_at=when, created_at=when)
    Attempt.objects.create(execution=execution, number=1, started_at=when)
    return execution


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_executions", *args, stdout=out)
    return out.getvalue()


def test_prune_deletes_old_finished_runs_only_and_keeps_counters(trigger):
    old_ok = aged(trigger, ExecutionStatus.SUCCEEDED, age=timedelta(days=100))
    old_skip = aged(trigger, ExecutionStatus.SKIPPED, age=timedelta(days=91))
    recent = aged(trigger, ExecutionStatus.FAILED, age=timedelta(days=10))
    stuck = aged(trigger, ExecutionStatus.RUNNING, age=timedelta(days=200))
    rerun = Execution.objects.create(
        trigger=trigger, origin=ExecutionOrigin.MANUAL, requested_at=clock.now(), rerun_of=old_ok
    )

    assert "would delete 2 execution(s)" in prune("--older-than", "90d", "--dry-run")
    assert Execution.objects.count() == 5

    assert "deleted 2 execution(s)" in prune("--older-than", "90d")
    remaining = set(Execution.objects.values_list("pk", flat=True))
    assert remaining == {recent.pk, stuck.pk, rerun.pk}, (
        "unfinished runs are never pruned, whatever their age"
    )
    assert not Attempt.objects.filter(execution_id__in=[old_ok.pk, old_skip.pk]).exists()
    assert Execution.objects.get(pk=rerun.pk).rerun_of_id is None
    trigger.refresh_from_db()
    assert (trigger.run_count, trigger.failure_count, trigger.consecutive_failures) == (7, 2, 1)
    assert (trigger.last_status, trigger.last_error) == ("failed", "boom")


@pytest.mark.parametrize(
    ("age", "kept"),
    [pytest.param("12h", {"2h"}, id="hours"), pytest.param("30m", set(), id="minutes")],
)
def test_short_ages(trigger, age, kept):
    rows = {
        "2h": aged(trigger, ExecutionStatus.SUCCEEDED, age=timedelta(hours=2)),
        "13h": aged(trigger, ExecutionStatus.SUCCEEDED, age=timedelta(hours=13)),
    }
    prune("--older-than", age)
    assert {k for k, e in rows.items() if Execution.objects.filter(pk=e.pk).exists()} == kept


def test_the_daily_task_prunes_with_the_default_retention(trigger, settings):
    aged(trigger, ExecutionStatus.SUCCEEDED, age=timedelta(days=100))
    aged(trigger, ExecutionStatus.SUCCEEDED, age=timedelta(days=2))
    assert tasks.prune() == 1
    settings.SCHEDULER_EXECUTION_RETENTION = "1d"
    assert tasks.prune() == 1
    assert not Execution.objects.exists()


def test_a_bad_age_is_a_command_error():
    with pytest.raises(CommandError, match="--older-than"):
        prune("--older-than", "ninety days")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("90d", timedelta(days=90), id="days"),
        pytest.param("12h", timedelta(hours=12), id="hours"),
        pytest.param("30m", timedelta(minutes=30), id="minutes"),
        pytest.param("45s", timedelta(seconds=45), id="seconds"),
        pytest.param("2w", timedelta(weeks=2), id="weeks"),
        pytest.param(" 1D12h ", timedelta(days=1, hours=12), id="sum-and-case"),
    ],
)
def test_parse_age(text, expected):
    assert policies.parse_age(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "0d", "-5d", "1.5h", "90 days", "9" * 30 + "d"])
def test_parse_age_refuses(text):
    with pytest.raises(ValueError):  # noqa: PT011 - the message is checked by the command test
        policies.parse_age(text)


def test_prune_draws_progress_when_asked(trigger):
    for _ in range(3):
        aged(trigger, ExecutionStatus.SUCCEEDED, age=timedelta(days=100))
    out, err = StringIO(), StringIO()
    call_command("prune_executions", "--older-than", "90d", "--progress", stdout=out, stderr=err)
    assert "deleted 3 execution(s)" in out.getvalue()
    assert "prune by age" in err.getvalue()
    assert "3" in err.getvalue().split("prune by age")[-1], "the bar counts what went"
    quiet = StringIO()
    call_command("prune_executions", "--older-than", "90d", stdout=StringIO(), stderr=quiet)
    assert quiet.getvalue() == "", "no bar when stderr is not a terminal and none was asked for"
