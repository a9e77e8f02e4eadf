"""The fleet's own periodic tasks (sweeper, retention) are sent by the beat leader or a tick, once per period
fleet-wide, through the real broker."""

from __future__ import annotations

import json

import pytest
import redis

from schedules.beat.entries import Keys, celery_app
from schedules.beat.scheduler import send_housekeeping

pytestmark = [pytest.mark.integration]


def queued_tasks(client: redis.Redis) -> list[str]:
    """Task names waiting in the default queue (priority 0 lands in the plain `celery` list)."""
    return [json.loads(raw)["headers"]["task"] for raw in client.lrange("celery", 0, -1)]


def test_each_system_task_is_sent_once_per_period(redis_client: redis.Redis, settings) -> None:
    settings.SCHEDULER_SWEEP_SECONDS = 30
    settings.SCHEDULER_PRUNE_SECONDS = 86_400
    every = ["executions.prune", "executions.sweep", "notifications.prune", "notifications.sweep"]
    assert sorted(send_housekeeping()) == every
    assert send_housekeeping() == [], "another leader or a tick in the same period sends nothing"
    assert sorted(queued_tasks(redis_client)) == every
    keys = Keys.of(celery_app())
    assert 0 < redis_client.ttl(keys.housekeeping("executions.sweep")) <= 30


def test_a_lapsed_period_sends_again_and_zero_turns_a_task_off(redis_client: redis.Redis, settings) -> None:
    settings.SCHEDULER_SWEEP_SECONDS = 30
    settings.SCHEDULER_PRUNE_SECONDS = 0
    settings.SCHEDULER_NOTIFY_SWEEP_SECONDS = 0
    assert send_housekeeping() == ["executions.sweep"]
    redis_client.delete(Keys.of(celery_app()).housekeeping("executions.sweep"))
    assert send_housekeeping() == ["executions.sweep"]
    assert queued_tasks(redis_client) == ["executions.sweep", "executions.sweep"]
