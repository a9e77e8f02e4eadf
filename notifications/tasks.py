"""Thin tasks: plain values in, one service call each."""

from __future__ import annotations

from typing import Any

from celery import shared_task

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
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=100,
)
def deliver(delivery_id: str) -> None:
    if services.notification_deliver(delivery_id=delivery_id) == DeliveryStatus.RETRYING:
        raise DeliveryWillRetry(delivery_id)
