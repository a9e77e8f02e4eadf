"""`GET /api/v1/status/` and `manage.py fleet status` against a known backlog on the real broker: messages
pushed at known priorities into test queues, some of them taken (unacknowledged) by a consumer, one with an
ETA; runs recorded in the database; a leader lock and heartbeat; a due entry. The workers' inspect replies
are stood in for (the e2e health test reads a real worker's)."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from executions.models import ExecutionStatus
from scheduler_project.celery import app
from schedules.beat.sync import sync_trigger
from tests.integration.test_api_plumbing import client_for, make_execution, make_trigger
from tests.support.procs import free_port
from toolkit import clock, metrics

pytestmark = [pytest.mark.integration, pytest.mark.django_db, pytest.mark.urls("tests.integration.urls_ops")]

BACKLOG = "ops-backlog"
DELAYED = "ops-delayed"
#: priority -> messages pushed into BACKLOG
KNOWN = {0: 2, 3: 1, 6: 3, 9: 4}


class Inspect:
    """Stands in for `app.control.inspect(timeout=…)`: one worker running one launch."""

    replies: dict[str, Any] = {
        "stats": {"w1@host": {"pid": 4242, "pool": {"max-concurrency": 4}}},
        "active": {
            "w1@host": [
                {
                    "id": "4b7c2a1e-0000-0000-0000-000000000001",
                    "name": "executions.launch",
                    "args": ["e-1"],
                    "time_start": time.time() - 2.5,
                    "delivery_info": {"routing_key": "launch"},
                }
            ]
        },
    }

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    def stats(self) -> dict[str, Any]:
        return self.replies["stats"]

    def active(self) -> dict[str, Any]:
        return self.replies["active"]


@pytest.fixture(autouse=True)
def inspect(monkeypatch) -> None:
    monkeypatch.setattr(app.control, "inspect", Inspect)


@pytest.fixture
def staff(django_user_model, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_user(username="ops", password="pw-ops-123", is_staff=True)


@pytest.fixture
def backlog(redis_client):
    """KNOWN messages waiting in BACKLOG and one delayed (countdown) message in DELAYED; then a consumer takes
    the most urgent BACKLOG message and the delayed one without acknowledging them, as a worker does. Yields
    while they are held: kombu puts them back when the consumer's channel closes."""
    for priority, count in KNOWN.items():
        for _ in range(count):
            app.send_task("ops.noop", queue=BACKLOG, priority=priority)
    app.send_task("ops.noop", queue=DELAYED, countdown=300)
    with app.connection_for_read() as connection:
        channel = connection.default_channel
        taken = [channel.basic_get(BACKLOG, no_ack=False), channel.basic_get(DELAYED, no_ack=False)]
        assert all(taken)
        assert taken[0].properties["priority"] == 0, "the most urgent is served first"
        yield


def queues_of(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {queue["name"]: queue for queue in document["queues"]}


def test_queue_numbers_match_the_known_backlog(client, staff, backlog) -> None:
    response = client_for(staff).get("/api/v1/status/")
    assert response.status_code == 200
    queues = queues_of(response.json())
    waiting = {str(p): n for p, n in KNOWN.items()} | {"0": KNOWN[0] - 1}  # the urgent one was taken
    backlog_queue = queues[BACKLOG]
    assert {p: n for p, n in backlog_queue["waiting_by_priority"].items() if n} == waiting
    assert (backlog_queue["waiting"], backlog_queue["unacked"], backlog_queue["scheduled"]) == (9, 1, 0)
    delayed = queues[DELAYED]
    assert (delayed["waiting"], delayed["unacked"], delayed["scheduled"]) == (0, 1, 1), (
        "its ETA makes it scheduled"
    )
    assert backlog_queue["completed"] is None, "runs are counted on the launch queue only"


def test_runs_of_the_last_day_are_counted_on_the_launch_queue(client, staff, redis_client) -> None:
    trigger = make_trigger(staff)
    now = clock.now()
    for status, age_hours, count in (
        (ExecutionStatus.SUCCEEDED, 1, 3),
        (ExecutionStatus.FAILED, 2, 1),
        (ExecutionStatus.TIMED_OUT, 3, 1),
        (ExecutionStatus.CANCELLED, 1, 1),
        (ExecutionStatus.SUCCEEDED, 30, 2),  # older than the window
    ):
        for _ in range(count):
            make_execution(trigger, status=status, finished_at=now - timedelta(hours=age_hours))
    document = client_for(staff).get("/api/v1/status/").json()
    launch = queues_of(document)["launch"]
    assert (launch["completed"], launch["failed"]) == (3, 2)
    assert launch["active"] == 1, "the worker's running launch, by its delivery routing key"


def test_workers_beat_and_what_is_due(client, staff, redis_client) -> None:
    redis_client.set(app.conf.redbeat_lock_key, "token", px=6000)
    metrics.beat_heartbeat(0.002)
    trigger = make_trigger(staff, name="every second", cron_expression="* * * * * *")
    make_trigger(staff, name="yearly", cron_expression="0 0 1 1 *")
    sync_trigger(trigger.pk)

    document = client_for(staff).get("/api/v1/status/").json()
    (worker,) = document["workers"]
    assert (worker["name"], worker["concurrency"], worker["pid"]) == ("w1@host", 4, 4242)
    (task,) = worker["active"]
    assert (task["name"], task["queue"]) == ("executions.launch", "launch")
    assert task["running_seconds"] >= 2.5
    beat = document["beat"]
    assert beat["leader"] is True
    assert beat["holder"] == f"{socket.gethostname()}:{os.getpid()}"
    assert 0 < beat["lock_ttl_seconds"] <= 6
    assert beat["age_seconds"] < 5
    assert beat["tick_seconds"] == pytest.approx(0.002)
    assert document["due_next_minute"] == 1
    assert [(d["id"], d["name"]) for d in document["due_soon"]] == [(str(trigger.pk), "every second")]
    assert document["errors"] == {}


def test_staff_only(client, user, staff, redis_client, settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    assert client.get("/api/v1/status/").status_code == 401
    assert client_for(user).get("/api/v1/status/").status_code == 403
    assert client_for(staff).get("/api/v1/status/").status_code == 200


def test_fleet_status_prints_the_same_numbers(staff, backlog) -> None:
    out = StringIO()
    call_command("fleet", "status", stdout=out)
    text = out.getvalue()
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("ops-")}
    assert rows[BACKLOG][:2] == [BACKLOG, "9"]
    assert "0:1 3:1 6:3 9:4" in text
    assert rows[DELAYED][1:2] == ["0"]
    assert "w1@host" in text
    assert "NO LEADER" in text

    out = StringIO()
    call_command("fleet", "status", "--json", stdout=out)
    assert queues_of(json.loads(out.getvalue()))[BACKLOG]["waiting"] == 9


def test_fleet_status_fails_when_redis_cannot_be_read(staff, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    out = StringIO()
    with pytest.raises(CommandError, match="incomplete: redis"):
        call_command("fleet", "status", stdout=out)
    assert "could not read redis" in out.getvalue()
