"""Flower tells the truth about launches (issue #20): through a real launcher worker (the Procfile's
`-P threads -Q launch`, events on), the real Redis broker and a real Flower reading the events, a run of a
failing demo trigger shows as a FAILURE task, one that will be retried as RETRY then FAILURE, and each
launch task names its trigger, workflow and slot. The broker is left with no message to redeliver: a task
marked failed is acknowledged, and its run is attempted exactly as often as the database says."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from django.conf import settings

from executions import services
from executions.models import Attempt, Execution
from schedules import services as trigger_services
from schedules.models import Trigger
from tests.conftest import ARTIFACTS
from tests.e2e.test_executions_launch import wait_end
from tests.support.procs import Fleet, celery_cmd, fleet, free_port, live_database_url, wait_for
from toolkit import clock

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TARGETS = {
    "default": {
        "kind": "demo",
        "speed": 0,
        # Fails every attempt, always retryably: attempt 1 is retried, the last one fails the run.
        "workflows": {"always-retry": {"steps": ["call"], "seconds": 0, "failure_rate": 1.0}},
    }
}


@pytest.fixture(scope="module")
def monitored(django_db_setup) -> Iterator[tuple[Fleet, str]]:
    """Flower first (it sees only the events sent while it listens), then one launcher worker."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env["DATABASE_URL"] = live_database_url()
    env["SCHEDULER_TARGETS"] = json.dumps(TARGETS)
    env["FLOWER_UNAUTHENTICATED_API"] = "true"  # Flower 2 serves /api/* without auth only when told to
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with fleet(ARTIFACTS / "logs" / "test_flower_launches", env) as group:
        group.start("flower", celery_cmd("flower", "--address=127.0.0.1", f"--port={port}"))
        wait_for(lambda: flower_tasks(url) is not None, timeout=60, what="Flower's API answering")
        start_launcher(group)
        yield group, url
    client.flushdb()
    client.close()


def start_launcher(group: Fleet) -> None:
    """The Procfile's launcher role: the launch queue on a thread pool, task events on."""
    cmd = celery_cmd(
        "worker", "-Q", "launch", "-P", "threads", "--concurrency=2", "-E", "--loglevel=INFO",
        "--without-gossip", "--without-mingle", "-n", f"launcher-{group.marker[:8]}@%h",
    )  # fmt: skip
    proc = group.start("launcher", cmd)
    wait_for(
        lambda: proc.poll() is not None or " ready." in group.log("launcher"), timeout=60, what="launcher"
    )
    assert proc.poll() is None, group.log("launcher")


def flower_tasks(url: str) -> dict[str, dict]:
    with urllib.request.urlopen(f"{url}/api/tasks?limit=500", timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture(autouse=True)
def configured(settings) -> None:
    settings.SCHEDULER_TARGETS = TARGETS
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def new_trigger(owner, name: str, workflow_id: str, **fields) -> Trigger:
    values = {
        "target": "default", "cron_expression": "0 0 1 1 *", "max_attempts": 2, "backoff_seconds": 1,
        "timeout_seconds": 5, **fields,
    }  # fmt: skip
    return trigger_services.trigger_register(owner=owner, name=name, workflow_id=workflow_id, **values)


def tasks_of(url: str, trigger_name: str, *, states: int) -> list[dict]:
    """The launch tasks Flower shows for a trigger, once it shows `states` of them in a final state."""

    def found() -> list[dict] | None:
        named = [
            task
            for task in flower_tasks(url).values()
            if task["name"].startswith("executions.launch") and f"'{trigger_name}" in (task["kwargs"] or "")
        ]
        final = [t for t in named if t["state"] in ("SUCCESS", "FAILURE", "RETRY")]
        return sorted(final, key=lambda t: t["received"]) if len(final) >= states else None

    return wait_for(found, timeout=60, what=f"Flower to show {states} launch tasks of {trigger_name}")


def assert_nothing_left_to_redeliver() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        queued = sum(client.llen(key) for key in client.keys("launch*") if client.type(key) == b"list")
        assert queued == 0, "no launch message waits in the broker"
        assert client.hlen("unacked") == 0, "every launch message was acknowledged, failed ones too"
    finally:
        client.close()


def test_a_failed_launch_is_a_failed_task_that_names_its_trigger(monitored, user):
    _group, url = monitored
    trigger = new_trigger(user, "nightly-broken", "broken")
    execution = wait_end(services.execution_run_now(trigger=trigger))
    assert execution.status == "failed"
    (task,) = tasks_of(url, "nightly-broken", states=1)
    assert task["state"] == "FAILURE"
    assert task["name"] == "executions.launch"
    assert "LaunchFailed" in task["exception"]
    assert "nightly-broken" in task["exception"]
    assert "'workflow': 'broken'" in task["kwargs"]
    assert "'slot': 'manual'" in task["kwargs"]
    assert json.loads(task["args"].replace("'", '"')) == [str(execution.pk)], "the arguments stay ids"
    wait_for(assert_quiet, timeout=20, what="the broker to hold nothing for redelivery")
    assert Attempt.objects.filter(execution=execution).count() == 1, "acked: never re-run by Celery"


def assert_quiet() -> bool:
    assert_nothing_left_to_redeliver()
    return True


def test_a_retried_launch_shows_retry_then_failure(monitored, user):
    _group, url = monitored
    trigger = new_trigger(user, "api-sync-flaky", "always-retry")
    execution = wait_end(services.execution_run_now(trigger=trigger))
    assert execution.status == "failed"
    tasks = tasks_of(url, "api-sync-flaky", states=2)
    assert [t["state"] for t in tasks] == ["RETRY", "FAILURE"]
    assert "LaunchWillRetry" in tasks[0]["exception"]
    assert len({t["uuid"] for t in tasks}) == 2, "the retry is the service's own new message"
    wait_for(assert_quiet, timeout=20, what="the broker to hold nothing for redelivery")
    assert Attempt.objects.filter(execution=execution).count() == 2


def test_a_scheduled_slot_names_its_slot(monitored, user):
    """Slots (here a backfilled one, through the fire path) go out in a launch batch, the demo target being
    batchable: Flower shows the batch failed, with the trigger and the slot in words."""
    _group, url = monitored
    trigger = new_trigger(user, "daily-broken", "broken", cron_expression="0 3 * * *", max_attempts=1)
    now = clock.now()
    services.execution_backfill(trigger=trigger, start=now - timedelta(days=2), end=now - timedelta(days=1))
    (execution,) = Execution.objects.filter(trigger=trigger)
    assert wait_end(execution).status == "failed"
    (task,) = tasks_of(url, "daily-broken", states=1)
    assert (task["name"], task["state"]) == ("executions.launch_batch", "FAILURE")
    assert f"daily-broken (broken) @ {execution.slot:%Y-%m-%dT%H:%M:%SZ}" in task["kwargs"]
    assert "daily-broken" in task["exception"]
    wait_for(assert_quiet, timeout=20, what="the broker to hold nothing for redelivery")
