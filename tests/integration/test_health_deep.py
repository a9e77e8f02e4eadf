"""`/healthz` beyond the database and Redis: a beat leader that ticks, and a worker that answers. The worker
ping is replaced here (the e2e tests stop and start real workers and beats); the lock and the heartbeat
are the real Redis keys the beat writes."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from django.test import Client

from scheduler_project.celery import app
from tests.support.procs import free_port
from toolkit import metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db, pytest.mark.urls("tests.integration.urls_ops")]


class Ping:
    """Stands in for `app.control.ping`, recording how it was asked."""

    def __init__(self, replies: list[dict[str, Any]] | Exception) -> None:
        self.replies = replies
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.calls.append(kwargs)
        if isinstance(self.replies, Exception):
            raise self.replies
        return self.replies


@pytest.fixture
def ping(monkeypatch) -> Ping:
    fake = Ping([{"worker@host": {"ok": "pong"}}])
    monkeypatch.setattr(app.control, "ping", fake)
    return fake


@pytest.fixture
def leader(redis_client: redis.Redis) -> redis.Redis:
    """A beat holding the lock that has just ticked."""
    redis_client.set(app.conf.redbeat_lock_key, "token", px=6000)
    metrics.beat_heartbeat(0.004)
    return redis_client


def healthz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    return response.status_code, response.json()


def test_ok_when_a_leader_ticks_and_a_worker_answers(client, leader, ping, settings) -> None:
    status, body = healthz(client)
    assert status == 200
    beat = body["checks"].pop("beat")
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "workers": {"status": "ok", "count": 1}},
    }
    assert beat["status"] == "ok"
    assert 0 <= beat["age_seconds"] < 1
    assert ping.calls == [{"timeout": settings.HEALTH_WORKER_PING_TIMEOUT, "limit": 1}], "stops at a pong"


def test_no_leader_lock_is_503(client, redis_client, ping) -> None:
    metrics.beat_heartbeat(0.004)  # a beat ticked, then released the lock (stopped)
    status, body = healthz(client)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["beat"]["status"] == "down"
    assert body["checks"]["beat"]["detail"] == "no beat holds the leader lock"
    assert body["checks"]["workers"]["status"] == "ok", "each check is reported on its own"


def test_a_leader_that_stopped_ticking_is_503_with_its_age(client, leader, ping, settings) -> None:
    stale = settings.HEALTH_BEAT_MAX_AGE_SECONDS + 7
    leader.hset(metrics.beat_key(), "tick_at", f"{time.time() - stale:.3f}")
    status, body = healthz(client)
    assert status == 503
    beat = body["checks"]["beat"]
    assert beat["status"] == "down"
    assert beat["age_seconds"] == pytest.approx(stale, abs=1)
    assert "has not ticked" in beat["detail"]


@pytest.mark.parametrize(
    ("replies", "detail"),
    [
        pytest.param([], "no worker answered within 2s", id="silence"),
        pytest.param(OSError("broker gone"), "OSError: broker gone", id="ping-raises"),
    ],
)
def test_no_worker_answering_is_503(client, leader, monkeypatch, replies, detail) -> None:
    monkeypatch.setattr(app.control, "ping", Ping(replies))
    status, body = healthz(client)
    assert status == 503
    assert body["checks"]["workers"] == {"status": "down", "count": 0, "detail": detail}
    assert body["checks"]["beat"]["status"] == "ok"


def test_with_redis_down_the_fleet_checks_are_unknown_and_not_tried(client, monkeypatch, settings) -> None:
    monkeypatch.setattr(app.control, "ping", Ping(AssertionError("a ping with Redis down would hang")))
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    status, body = healthz(client)
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down: ")
    for name in ("beat", "workers"):
        assert body["checks"][name] == {"status": "unknown", "detail": "not checked: Redis is down"}


def test_readyz_is_the_web_process_alone(client, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["database"] == "ok"
    assert set(response.json()["checks"]) == {"database", "redis"}, "no fleet check: the web process alone"
