"""Thin tasks: plain values in, one service call each."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.conf import settings

from executions import policies
from notifications import services
from notifications.models import DeliveryStatus
from toolkit import outage
from toolkit.events import Event


class DeliveryWillRetry(Exception):
    """An attempt failed and the service recorded `retrying`: Celery sends the next one with backoff."""


@shared_task(
    name="notifications.route",
    acks_late=True,
    ignore_result=True,
    autoretry_for=outage.DATABASE_ERRORS,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=20,
)
def route(events: list[dict[str, Any]]) -> None:
    """Committed events (`toolkit.events.Event.as_dict`) to deliveries, deduplicated per window."""
    parsed = []
    for raw in events:
        try:
            parsed.append(Event.from_dict(raw))
        except (TypeError, KeyError):
            continue
    services.notification_route(events=parsed)


@shared_task(
    name="notifications.deliver",
    acks_late=True,
    ignore_result=True,
    autoretry_for=(DeliveryWillRetry, *outage.DATABASE_ERRORS),
    # 2 s, 4 s, 8 s … up to 10 min, jittered; the service stops at SCHEDULER_NOTIFY_MAX_ATTEMPTS.
    retry_backoff=2,
    retry_backoff_max=services.RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=100,
)
def deliver(delivery_id: str) -> None:
    if services.notification_deliver(delivery_id=delivery_id) == DeliveryStatus.RETRYING:
        raise DeliveryWillRetry(delivery_id)


@shared_task(name="notifications.sweep", acks_late=True, ignore_result=True)
def sweep() -> int:
    """Periodic (`SCHEDULER_NOTIFY_SWEEP_SECONDS`): send again the deliveries whose message was lost."""
    return services.notification_resend_stuck()


@shared_task(name="notifications.prune", acks_late=True, ignore_result=True)
def prune(older_than: str | None = None) -> dict[str, int]:
    """Periodic retention (`SCHEDULER_PRUNE_SECONDS`): final deliveries older than `older_than` (default
    `SCHEDULER_NOTIFY_RETENTION`), and expired windows."""
    age = older_than or settings.SCHEDULER_NOTIFY_RETENTION
    return services.notification_prune(older_than=policies.parse_age(age))
