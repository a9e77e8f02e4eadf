"""`/healthz` and the status page against a real worker and a real beat: healthy with both, 503 naming the
worker or the beat when it is stopped, healthy again when it is back."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.e2e import test_beat_fleet as beat_fleet
from tests.e2e.test_beat_fleet import start_beat
from tests.e2e.test_executions_launch import start_worker
from tests.integration.test_api_plumbing import client_for
from tests.support.procs import Fleet, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.urls("tests.integration.urls_ops"),
]
fresh_logs = beat_fleet.fresh_logs  # autouse: empty logs first, since waits and checks read them


def checks(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/healthz")
    return response.status_code, response.json()["checks"]


def wait_health(client: Client, status: int, what: str) -> dict[str, Any]:
    """The checks once /healthz answers `status` (deadline: a few loop intervals and a ping window)."""
    return wait_for(lambda: (r := checks(client))[0] == status and r[1], timeout=20, interval=0.2, what=what)


def test_healthz_follows_the_worker_and_the_beat(
    processes: Fleet, redis_client, client, django_user_model
) -> None:
    start_worker(processes, "worker")
    start_beat(processes, "beat")
    healthy = wait_health(client, 200, "healthy with a worker and a beat")
    assert healthy["workers"] == {"status": "ok", "count": 1}
    assert healthy["beat"]["status"] == "ok"
    assert healthy["beat"]["age_seconds"] < 3

    staff = django_user_model.objects.create_user(username="ops", password="pw-ops-123", is_staff=True)
    status = client_for(staff).get("/api/v1/status/").json()
    (worker,) = status["workers"]
    assert worker["name"].startswith("worker-")
    assert worker["concurrency"] == 1
    assert status["beat"]["leader"] is True
    assert status["beat"]["holder"].endswith(f":{processes.procs['beat'].pid}")

    processes.stop("worker")
    down = wait_health(client, 503, "503 once the worker is gone")
    assert down["workers"]["status"] == "down"
    assert down["beat"]["status"] == "ok"
    start_worker(processes, "worker-2")
    wait_health(client, 200, "healthy again with a new worker")

    processes.stop("beat")  # SIGTERM: the beat releases the lock on its way out
    down = wait_health(client, 503, "503 once the beat is gone")
    assert down["beat"]["detail"] == "no beat holds the leader lock"
    assert down["workers"]["status"] == "ok"
    start_beat(processes, "beat-2")
    wait_health(client, 200, "healthy again with a new beat")
