"""The web side of an outage, against a database and a Redis that really refuse connections (a port nothing
listens on): every API and admin request that needs the missing part is a 503 JSON answer with Retry-After,
never a 500 or HTML; throttling fails open while Redis is down; and the next request after the part comes
back is served again, without a restart."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client

from executions import services
from executions.models import Execution, ExecutionStatus
from schedules import services as trigger_services
from tests.integration.test_api_plumbing import client_for, make_trigger
from tests.support.procs import free_port
from toolkit import clock

pytestmark = [pytest.mark.integration]


@contextlib.contextmanager
def database_refusing() -> Iterator[None]:
    """The default connection pointed at a closed port until the block ends; then back, as a restarted
    database would be."""
    if connection.vendor != "postgresql":
        pytest.skip("a refused connection needs a networked database")
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def assert_unavailable(response, dependency: str) -> None:
    assert response.status_code == 503, (response.status_code, response.content[:300])
    assert response["Content-Type"].split(";")[0] in ("application/json", "application/problem+json")
    assert int(response["Retry-After"]) > 0
    body = response.json()
    assert body.get("unavailable") == dependency or dependency in body.get("error", ""), body


@pytest.mark.django_db(transaction=True)
def test_every_request_gets_503_json_while_the_database_refuses_and_is_served_after(
    user, django_user_model
) -> None:
    api = client_for(user)
    trigger = make_trigger(user)
    admin = Client()
    admin.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123"))
    compat = client_for(user)

    with database_refusing():
        assert_unavailable(api.get("/api/v1/triggers/"), "database")
        assert_unavailable(api.get(f"/api/v1/triggers/{trigger.pk}/"), "database")
        assert_unavailable(
            api.post("/api/v1/triggers/", {"name": "n", "workflow_id": "w", "cron_expression": "* * * * *"}),
            "database",
        )
        assert_unavailable(api.post(f"/api/v1/triggers/{trigger.pk}/run/", {}), "database")
        assert_unavailable(
            Client().post(
                "/api/v1/auth/token/", {"username": "a", "password": "b"}, content_type="application/json"
            ),
            "database",
        )
        assert_unavailable(admin.get("/admin/"), "database")
        assert_unavailable(admin.get("/admin/schedules/trigger/"), "database")
        answer = compat.get("/api/scheduler/history")
        assert answer.status_code == 503, answer.content[:300]
        assert answer.json()["success"] is False
        flows = compat.get("/api/_flows/example-flow/schedules")
        assert flows.status_code == 503, flows.content[:300]
        assert flows.json() == {
            "error": True,
            "statusCode": 503,
            "statusMessage": "the database is unavailable; try again shortly",
            "message": "the database is unavailable; try again shortly",
        }
        assert Client().get("/readyz").status_code == 503

    assert api.get("/api/v1/triggers/").status_code == 200, "served again, no restart"
    assert admin.get("/admin/schedules/trigger/").status_code == 200
    assert Client().get("/readyz").status_code == 200


@pytest.mark.django_db
def test_the_api_answers_from_the_database_while_redis_is_down(user, settings) -> None:
    """Throttle counters live in Redis: with Redis unreachable the API serves unthrottled, and says so."""
    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "5/min", "auth": "5/min"},
    }
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": dead}
    }
    settings.REDIS_URL = dead
    api = client_for(user)
    make_trigger(user)
    answers = [api.get("/api/v1/triggers/").status_code for _ in range(8)]
    assert answers == [200] * 8, "above the 5/min rate: the throttle failed open, nothing was refused"
    ready = Client().get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert "failing open" in ready.json()["serving"]["throttling"]


@pytest.mark.django_db
def test_a_broker_that_lost_its_messages_gets_every_queued_run_again(
    user, redis_client, settings, django_capture_on_commit_callbacks
) -> None:
    """A Redis restarted empty (here: FLUSHDB on the real broker) is noticed by the next sweep, which resends
    every queued run at once, not after the visibility timeout; a retry keeps what is left of its backoff.
    While the broker keeps its messages, nothing is resent."""
    settings.SCHEDULER_TARGETS = {"demo": {"kind": "demo", "speed": 0}}
    trigger = trigger_services.trigger_register(
        owner=user, name="lost", workflow_id="hello", target="demo", cron_expression="0 0 1 1 *"
    )
    services.execution_sweep()  # the first look sets the marker: the broker is watched from here on
    with django_capture_on_commit_callbacks(execute=True):
        fresh = services.execution_run_now(trigger=trigger)
    retry = Execution.objects.create(
        trigger=trigger,
        origin="manual",
        status=ExecutionStatus.QUEUED,
        task_id="retry-message",
        queued_at=clock.now(),
        not_before=clock.now() + timedelta(seconds=30),
        priority=trigger.priority,
    )
    assert services.execution_sweep().requeued == 0, "the broker kept its messages: nothing is resent"

    redis_client.flushdb()
    assert services.execution_sweep().requeued == 2
    assert services.execution_sweep().requeued == 0, "one loss, one resend"

    messages = [
        json.loads(raw)
        for key in redis_client.keys("launch*")
        if redis_client.type(key) == b"list"
        for raw in redis_client.lrange(key, 0, -1)
    ]
    by_id = {m["headers"]["id"]: m["headers"] for m in messages}
    fresh.refresh_from_db()
    retry.refresh_from_db()
    assert set(by_id) == {fresh.task_id, retry.task_id}, "each row's new message carries its new task id"
    assert retry.task_id != "retry-message"
    assert by_id[fresh.task_id]["eta"] is None
    eta = by_id[retry.task_id]["eta"]
    assert eta is not None, "the retry still waits out its backoff"
