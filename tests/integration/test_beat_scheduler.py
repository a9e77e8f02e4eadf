"""`TriggerScheduler` in-process against the real Redis and database: what a tick costs and leaves behind
(the heartbeat in the peek's one round trip, the first-tick marker), how a standby times its next try
(the held lock's expiry), and housekeeping claims made once per period."""

from __future__ import annotations

import logging
import os
import time

import pytest
import redis

from scheduler_project.celery import app
from schedules.beat.entries import Keys
from schedules.beat.scheduler import TriggerScheduler, send_housekeeping
from toolkit import metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

KEYS = Keys.of(app)


@pytest.fixture
def scheduler(redis_client: redis.Redis):
    beat = TriggerScheduler(app=app, lazy=True)
    yield beat
    beat.close()


def test_a_tick_writes_the_heartbeat_in_its_peek_and_a_new_leader_marks_its_first_tick(
    scheduler, redis_client, caplog
):
    assert KEYS.heartbeat == metrics.beat_key(), "one name for the key the beat writes and /healthz reads"
    with caplog.at_level(logging.INFO, logger="schedules.beat.scheduler"):
        scheduler.tick()
        scheduler.tick()
    heartbeat = metrics.read_heartbeat(redis_client)
    assert heartbeat is not None
    assert heartbeat.pid == os.getpid()
    assert heartbeat.age() < 5
    assert heartbeat.tick_seconds > 0
    markers = [r.getMessage() for r in caplog.records if "first tick as leader done" in r.getMessage()]
    assert len(markers) == 1, "once per takeover, not per tick"
    stamp = float(markers[0].split(" at ")[1].split(":")[0])
    assert abs(stamp - time.time()) < 60, "the wall time the first tick ended"


def test_a_standby_tries_again_as_the_held_lock_expires(scheduler, redis_client, caplog):
    redis_client.set(KEYS.lock, "another beat", px=300)
    interval = scheduler.tick()
    assert scheduler.lock is None, "held by another: standing by"
    assert 0 < interval <= 0.3 + 0.01, "it sleeps until the expiry, not a whole loop interval"
    redis_client.set(KEYS.lock, "another beat", px=60_000)
    assert scheduler.tick() == scheduler._standby_interval(), "a distant expiry: the usual interval"
    redis_client.delete(KEYS.lock)
    with caplog.at_level(logging.INFO, logger="schedules.beat.scheduler"):
        scheduler.tick()
    assert scheduler.lock is not None
    assert any("beat: Acquired lock" in r.getMessage() for r in caplog.records)


def test_housekeeping_claims_a_task_once_per_period_and_retries_one_claimed_elsewhere(redis_client):
    next_try: dict[str, float] = {}
    redis_client.set(KEYS.housekeeping("executions.prune"), "1", ex=60)  # another beat sent it this period
    first = send_housekeeping(app=app, client=redis_client, next_try=next_try)
    assert "executions.sweep" in first
    assert "executions.prune" not in first
    for task in first:
        redis_client.delete(KEYS.housekeeping(task))  # even with the claim gone, not before its period
    assert send_housekeeping(app=app, client=redis_client, next_try=next_try) == []
    assert next_try["executions.prune"] - time.monotonic() <= 1.0, "claimed elsewhere: tried in a second"
