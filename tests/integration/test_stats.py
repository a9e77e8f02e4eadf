"""Statistics against hand-computed figures, on whichever database the run uses (PostgreSQL's
percentile_cont and the SQLite fallback must agree)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from executions.stats import trigger_stats
from schedules import services as trigger_services
from toolkit import clock

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def trigger_of(owner, name: str, cron: str = "0 9 * * *"):
    return trigger_services.trigger_register(owner=owner, name=name, workflow_id=name, cron_expression=cron)


def record(trigger, status: str, duration_ms: int | None = None, *, minutes_ago: int = 60) -> Execution:
    started = clock.now() - timedelta(minutes=minutes_ago)
    return Execution.objects.create(
        trigger=trigger,
        origin=ExecutionOrigin.MANUAL,
        requested_at=started,
        status=status,
        started_at=None if status == ExecutionStatus.SKIPPED else started,
        duration_ms=duration_ms,
    )


@pytest.fixture
def history(user, other_user):
    """Alice's trigger: 4 successes (100..400 ms), one failure (1000 ms), one time-out (5000 ms), two skips,
    one cancellation (50 ms, left out of durations) and one run still going. Bob's: one 10 ms success."""
    alice = trigger_of(user, "alice-report")
    for n, ms in enumerate((100, 200, 300, 400)):
        record(alice, ExecutionStatus.SUCCEEDED, ms, minutes_ago=60 - n)
    record(alice, ExecutionStatus.FAILED, 1000, minutes_ago=50)
    record(alice, ExecutionStatus.TIMED_OUT, 5000, minutes_ago=40)
    record(alice, ExecutionStatus.SKIPPED)
    record(alice, ExecutionStatus.SKIPPED)
    record(alice, ExecutionStatus.CANCELLED, 50, minutes_ago=30)
    latest = record(alice, ExecutionStatus.RUNNING, minutes_ago=5)
    bob = trigger_of(other_user, "bob-sync", cron="0 8 * * *")
    record(bob, ExecutionStatus.SUCCEEDED, 10, minutes_ago=20)
    return alice, bob, latest


def test_trigger_stats_match_hand_computed_figures(history, django_assert_max_num_queries):
    alice, _, latest = history
    with django_assert_max_num_queries(1 if connection.vendor == "postgresql" else 3):
        stats = trigger_stats(trigger=alice)
    assert stats == {
        "total": 10,
        "successful": 4,
        "failed": 2,  # failed + timed out
        "skipped": 2,
        "successRate": 66.7,  # 4 of 6 finished
        "avgDurationMs": 1167,  # (100+200+300+400+1000+5000) / 6
        "p50DurationMs": 350,  # between 300 and 400
        "p95DurationMs": 4000,  # rank 4.75: 1000 + 0.75 * (5000 - 1000)
        "lastRunAt": latest.started_at,
        "nextRunAt": alice.next_run_at,
        "creditsUsed": 0.0,  # no run reported usage (sums: tests/integration/test_usage.py)
        "inputTokens": 0,
        "outputTokens": 0,
        "cost": 0.0,
    }


def test_owner_and_global_scopes(history, user):
    alice, bob, _ = history
    assert trigger_stats(owner=user)["total"] == 10
    everything = trigger_stats()
    assert (everything["total"], everything["successful"]) == (11, 5)
    assert everything["p50DurationMs"] == 300  # 10,100,200,300,400,1000,5000 -> the middle one
    assert everything["nextRunAt"] == min(alice.next_run_at, bob.next_run_at)


def test_since_limits_the_window(history):
    alice, _, _ = history
    Execution.objects.filter(trigger=alice, status=ExecutionStatus.FAILED).update(
        created_at=clock.now() - timedelta(days=3)
    )
    stats = trigger_stats(trigger=alice, since=clock.now() - timedelta(days=1))
    assert (stats["total"], stats["failed"], stats["successRate"]) == (9, 1, 80.0)


def test_no_runs_yet(user):
    stats = trigger_stats(trigger=trigger_of(user, "fresh"))
    assert stats["total"] == 0
    assert stats["successRate"] is None
    assert (stats["avgDurationMs"], stats["p50DurationMs"], stats["p95DurationMs"]) == (None, None, None)
    assert stats["lastRunAt"] is None
