"""`POST /api/v1/tick`: the beat pass for hosts without a beat. Authentication (a bearer secret, outside the
API's normal auth), idempotence, and concurrent calls — beside each other and beside a beat — each slot sent
once and recorded once by a real worker."""

from __future__ import annotations

import json
import threading
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import path, resolve

from executions.models import Execution
from scheduler_project.celery import app
from schedules import services, tick
from schedules.beat import entries
from schedules.beat.dispatch import BeatPass
from schedules.beat.entries import Keys
from schedules.models import Trigger
from tests.support.beat import entry_of
from tests.support.procs import celery_cmd, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.urls(__name__)]

# What scheduler_project/urls.py wires (test_the_root_urlconf_serves_the_tick checks it does).
urlpatterns = [path("api/v1/tick", tick.tick_view), path("api/v1/tick/", tick.tick_view)]

SECRET = "test-cron-secret-0123456789"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEYS = Keys.of(app)


def post(client: Client, url: str = "/api/v1/tick", **headers: str):
    return client.post(url, headers=headers)


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def due_trigger(db, user, frozen_clock, redis_client, django_capture_on_commit_callbacks) -> Trigger:
    frozen_clock.set(T0 + timedelta(seconds=3))
    with django_capture_on_commit_callbacks(execute=True):
        trigger = services.trigger_register(
            owner=user, name="t", workflow_id="wf", cron_expression="*/10 * * * * *"
        )
    frozen_clock.set(T0 + timedelta(seconds=10.2))
    return trigger


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param(bearer("wrong-secret"), id="wrong"),
        pytest.param(bearer(SECRET + "x"), id="longer"),
        pytest.param({"Authorization": "Bearer"}, id="empty"),
        pytest.param({"Authorization": f"Basic {SECRET}"}, id="other-scheme"),
        pytest.param({"Authorization": SECRET}, id="no-scheme"),
    ],
)
def test_a_missing_or_wrong_secret_is_401_and_fires_nothing(due_trigger, redis_client, headers):
    response = post(Client(), **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert entry_of(KEYS, KEYS.entry(due_trigger.pk))["next_slot"] == "2026-03-02T12:00:10+00:00"


def test_the_right_secret_fires_what_is_due_once_and_a_second_call_fires_nothing(due_trigger, redis_client):
    client = Client(enforce_csrf_checks=True)  # a cron service has no CSRF token: the view is exempt
    first = post(client, **bearer())
    assert first.status_code == 200
    body = first.json()
    assert body["count"] == 1
    assert body["fired"] == [
        {"trigger_id": str(due_trigger.pk), "slot": "2026-03-02T12:00:10+00:00", "origin": "tick"}
    ]
    again = post(client, "/api/v1/tick/", **bearer())
    assert (again.status_code, again.json()["count"]) == (200, 0), "idempotent: the slot is reserved"
    assert entry_of(KEYS, KEYS.entry(due_trigger.pk))["next_slot"] == "2026-03-02T12:00:20+00:00"
    message = json.loads(redis_client.lindex("fire:6", 0))
    assert message["headers"]["task"] == "executions.fire_batch"
    assert message["headers"]["argsrepr"] == repr(
        [[[str(due_trigger.pk), "2026-03-02T12:00:10+00:00", "tick"]]]
    )


def test_an_unset_secret_hides_the_endpoint(due_trigger, settings):
    settings.CRON_SECRET = ""
    assert post(Client(), **bearer()).status_code == 404
    assert post(Client(), **bearer("")).status_code == 404
    assert Client().get("/api/v1/tick").status_code == 404


def test_get_is_405(due_trigger):
    response = Client().get("/api/v1/tick", headers=bearer())
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_a_tick_reconciles_when_no_beat_holds_the_lock(due_trigger, redis_client):
    redis_client.delete(KEYS.entry(due_trigger.pk))
    redis_client.zrem(KEYS.schedule, KEYS.entry(due_trigger.pk))
    body = post(Client(), **bearer()).json()
    assert body["reconciled"]["added"] == [str(due_trigger.pk)]
    assert post(Client(), **bearer()).json()["reconciled"] is None, "at most once per reconcile period"
    redis_client.delete(KEYS.reconciled)
    redis_client.set(KEYS.lock, "a-beat")
    assert post(Client(), **bearer()).json()["reconciled"] is None, "a running beat reconciles, not the tick"


@pytest.mark.urls("scheduler_project.urls")
def test_the_root_urlconf_serves_the_tick() -> None:
    for url in ("/api/v1/tick", "/api/v1/tick/"):
        assert resolve(url).func is tick.tick_view


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_concurrent_ticks_beside_a_beat_send_and_record_each_slot_once(
    live_server, processes, redis_client, user
):
    """Eight concurrent POSTs and a beat pass racing them over twenty due entries: each slot is reserved by
    exactly one of them, and a real worker records exactly one execution per slot."""
    slot = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    triggers = [
        services.trigger_register(owner=user, name=f"t{i}", workflow_id="wf", kind="once", run_at=slot)
        for i in range(20)
    ]
    redis_client.set(KEYS.lock, "beat-token")
    beat = BeatPass(app=app, client=entries.redis_client(app), origin="schedule", lock_token=b"beat-token")
    wait_for(lambda: datetime.now(UTC) >= slot, timeout=5, what="the slot to fall due")

    start = threading.Barrier(9)
    results: list[dict] = []

    def call_tick() -> None:
        request = urllib.request.Request(f"{live_server.url}/api/v1/tick", method="POST", headers=bearer())
        start.wait()
        with urllib.request.urlopen(request, timeout=30) as response:
            results.append(json.loads(response.read()))

    def beat_pass() -> None:
        start.wait()
        now = datetime.now(UTC)
        fired = beat.run(beat.due_keys(now)[0], now).fired
        results.append({"fired": [f.as_json() for f in fired]})

    threads = [threading.Thread(target=call_tick) for _ in range(8)] + [threading.Thread(target=beat_pass)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    fired = [(f["trigger_id"], f["slot"]) for result in results for f in result["fired"]]
    assert len(results) == 9
    assert sorted(fired) == sorted((str(t.pk), slot.isoformat()) for t in triggers), "each slot sent once"
    processes.start(
        "worker",
        celery_cmd(
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ),
    )
    wait_for(lambda: Execution.objects.filter(slot=slot).count() == 20, timeout=60, what="20 executions")
    assert Execution.objects.filter(slot=slot).values("trigger").distinct().count() == 20
