"""The notifications' own housekeeping, on the real database (and the broker in eager mode): retention of
final deliveries and expired windows in bounded batches (`notifications.prune`), and the sweep that sends
again a delivery whose task message was lost (`notifications.sweep`), claimed by compare-and-set so that two
sweeps at once send it once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection

from notifications import services, tasks
from notifications.models import Delivery, DeliveryStatus, DeliveryWindow
from scheduler_project.celery import app
from schedules import services as trigger_services

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STUCK = 300


@pytest.fixture(autouse=True)
def notify_settings(settings) -> Iterator[None]:
    settings.SCHEDULER_NOTIFY_STUCK_SECONDS = STUCK
    settings.SCHEDULER_NOTIFY_MAX_ATTEMPTS = 3
    settings.SCHEDULER_NOTIFY_RETENTION = "7d"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def subscription(user):
    user.email = "alice@example.com"
    user.save()
    trigger = trigger_services.trigger_register(
        owner=user, name="nightly", workflow_id="w", cron_expression="* * * * *"
    )
    return services.subscription_create(owner=user, trigger=trigger.pk, event="failed", channel="email")


def delivery(subscription, *, status: str, at: datetime, attempts: int = 0, **fields) -> Delivery:
    return Delivery.objects.create(
        owner_id=subscription.owner_id,
        subscription=subscription,
        trigger_id=subscription.trigger_id,
        event="failed",
        channel="email",
        destination="alice@example.com",
        status=status,
        attempts=attempts,
        payload={"subject": "failed", "text": "it failed"},
        created_at=fields.get("created_at", at),
        updated_at=at,
    )


def statuses() -> dict[str, str]:
    return dict(Delivery.objects.values_list("destination", "status"))


# --- Retention ----------------------------------------------------------------------------------------------


def test_prune_deletes_old_final_deliveries_and_expired_windows_in_batches(
    subscription, frozen_clock, django_capture_on_commit_callbacks
) -> None:
    frozen_clock.set(T0)
    old, recent = T0 - timedelta(days=8), T0 - timedelta(days=6)
    kept = [
        delivery(subscription, status=DeliveryStatus.DELIVERED, at=recent),
        delivery(subscription, status=DeliveryStatus.PENDING, at=old),  # still going: never pruned
        delivery(subscription, status=DeliveryStatus.RETRYING, at=old),
    ]
    for status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.REFUSED) * 3:
        delivery(subscription, status=status, at=old)
    trigger_id = subscription.trigger_id
    DeliveryWindow.objects.create(subscription=subscription, trigger_id=trigger_id, event="failed", until=T0)
    live = DeliveryWindow.objects.create(
        subscription=subscription, trigger_id=trigger_id, event="recovered", until=T0 + timedelta(minutes=1)
    )

    assert services.notification_prune(older_than=timedelta(days=7), batch_size=2) == {
        "deliveries": 9,
        "windows": 1,
    }
    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert list(DeliveryWindow.objects.values_list("pk", flat=True)) == [live.pk]
    assert tasks.prune.apply().get() == {"deliveries": 0, "windows": 0}
    frozen_clock.set(T0 + timedelta(days=1, minutes=1))  # SCHEDULER_NOTIFY_RETENTION = 7d
    assert tasks.prune.apply().get() == {"deliveries": 1, "windows": 1}


def test_a_window_pruned_is_claimed_again(subscription, frozen_clock, django_capture_on_commit_callbacks):
    """After its window went, the next event claims a new one and is notified once, as before."""
    from toolkit.events import Event

    frozen_clock.set(T0)
    event = Event.of("failed", trigger=subscription.trigger, at=T0, reason="failed", failures=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert len(services.notification_route(events=[event])) == 1
    frozen_clock.set(T0 + timedelta(hours=2))
    assert services.notification_prune(older_than=timedelta(days=7)) == {"deliveries": 0, "windows": 1}
    with django_capture_on_commit_callbacks(execute=True):
        assert len(services.notification_route(events=[event])) == 1
        assert services.notification_route(events=[event]) == []
    assert len(mail.outbox) == 2


# --- Lost messages ------------------------------------------------------------------------------------------


def test_the_sweep_sends_again_what_was_lost_and_only_that(
    subscription, frozen_clock, django_capture_on_commit_callbacks
) -> None:
    frozen_clock.set(T0)
    stale = T0 - timedelta(seconds=STUCK + 1)
    fresh = T0 - timedelta(seconds=STUCK - 1)
    backoff = timedelta(seconds=services.RETRY_BACKOFF_MAX_SECONDS)
    rows = {
        "lost-pending": (DeliveryStatus.PENDING, stale, 0),
        "killed-sending": (DeliveryStatus.SENDING, stale, 1),
        "lost-retry": (DeliveryStatus.RETRYING, stale - backoff, 2),
        "fresh-pending": (DeliveryStatus.PENDING, fresh, 0),
        "in-flight": (DeliveryStatus.SENDING, fresh, 1),
        "retry-waiting": (DeliveryStatus.RETRYING, stale, 1),
        "no-try-left": (DeliveryStatus.SENDING, stale, 3),
        "done": (DeliveryStatus.DELIVERED, stale, 1),
    }
    for name, (status, at, attempts) in rows.items():
        row = delivery(subscription, status=status, at=at, attempts=attempts)
        Delivery.objects.filter(pk=row.pk).update(destination=name)

    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep.apply().get() == 3
    assert statuses() == {
        "lost-pending": "delivered",
        "killed-sending": "delivered",
        "lost-retry": "delivered",
        "fresh-pending": "pending",
        "in-flight": "sending",
        "retry-waiting": "retrying",
        "no-try-left": "failed",
        "done": "delivered",
    }
    assert sorted(m.to[0] for m in mail.outbox) == ["killed-sending", "lost-pending", "lost-retry"]
    assert "no try is left" in Delivery.objects.get(destination="no-try-left").last_error
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.sweep.apply().get() == 0


def test_a_message_redelivered_while_an_attempt_is_in_flight_sends_nothing(subscription, frozen_clock):
    frozen_clock.set(T0)
    row = delivery(subscription, status=DeliveryStatus.SENDING, at=T0 - timedelta(seconds=5), attempts=1)
    assert services.notification_deliver(delivery_id=row.pk) == DeliveryStatus.SENDING
    assert mail.outbox == []
    assert Delivery.objects.get(pk=row.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_send_each_lost_delivery_once(subscription) -> None:
    """Sweeps in separate connections, released together: the rows are claimed under SKIP LOCKED and
    re-stamped, so each lost delivery is sent exactly once between them."""
    lost = [
        delivery(subscription, status=DeliveryStatus.PENDING, at=datetime.now(UTC) - timedelta(minutes=10))
        for _ in range(20)
    ]
    barrier = threading.Barrier(6)
    sent: list[int] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            barrier.wait(timeout=10)
            sent.append(services.notification_resend_stuck())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert sum(sent) == len(lost)
    assert len(mail.outbox) == len(lost)
    assert set(statuses().values()) == {"delivered"}
