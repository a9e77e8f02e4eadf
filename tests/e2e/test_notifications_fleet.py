"""Notifications through a real Celery worker process and the real Redis broker: a run that fails in the
worker announces itself after commit, the worker routes it (`notifications.route`) and delivers it
(`notifications.deliver`) to a webhook on 127.0.0.1, retrying a 500 with backoff, signed with the
subscription's secret."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import redis

from executions import services, signing
from executions.models import Execution
from notifications import services as notification_services
from notifications.models import Delivery, DeliveryStatus
from schedules import services as trigger_services
from tests.conftest import ARTIFACTS
from tests.e2e.test_executions_launch import start_worker
from tests.support.procs import Fleet, fleet, live_database_url, wait_for
from toolkit import clock

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TARGETS = {
    "default": {"kind": "demo", "speed": 0},
    "doomed": {
        "kind": "demo",
        "speed": 0,
        "workflows": {"doomed": {"steps": ["a"], "seconds": 0, "failure_rate": 1.0, "fatal_share": 1.0}},
    },
}
NOTIFY = {
    "SCHEDULER_NOTIFY_WEBHOOK_HOSTS": "127.0.0.1",
    "SCHEDULER_NOTIFY_ALLOWED_NETWORKS": "127.0.0.1/32",
    "SCHEDULER_NOTIFY_WINDOW_SECONDS": "600",
}


@pytest.fixture
def worker(django_db_setup, settings) -> Iterator[Fleet]:
    settings.SCHEDULER_TARGETS = TARGETS
    settings.SCHEDULER_NOTIFY_WEBHOOK_HOSTS = ["127.0.0.1"]
    settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(NOTIFY, DATABASE_URL=live_database_url(), SCHEDULER_TARGETS=json.dumps(TARGETS))
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    with fleet(ARTIFACTS / "logs" / "test_notifications_fleet", env) as group:
        start_worker(group, "worker", concurrency=2)
        yield group
    client.flushdb()
    client.close()


def test_a_failed_run_reaches_the_webhook_through_the_worker(worker, receiver, user):
    receiver.statuses = [500, 200]
    trigger = trigger_services.trigger_register(
        owner=user, name="doomed", workflow_id="doomed", target="doomed", cron_expression="0 0 1 1 *",
        max_attempts=1,
    )  # fmt: skip
    subscription = notification_services.subscription_create(
        owner=user, trigger=trigger.pk, event="failed", channel="webhook", url=receiver.url
    )
    execution = services.execution_run_now(trigger=trigger)
    wait_for(lambda: Execution.objects.get(pk=execution.pk).is_finished, timeout=30, what="the run to fail")
    assert Execution.objects.get(pk=execution.pk).status == "failed"
    delivery = wait_for(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).first(),
        timeout=30,
        what="the notification to be delivered",
    )
    assert (delivery.attempts, delivery.response_code, delivery.event) == (2, 200, "failed")
    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        signing.verify(headers["x-scheduler-signature"], body, secret=subscription.secret, now=clock.now())
        assert json.loads(body)["trigger"]["name"] == "doomed"
