"""The only code that changes subscriptions and deliveries. Keyword-only, one transaction each, side
effects (the cached subscribed kinds, the delivery tasks) after commit.

Routing (`notification_route`, from the `notifications.route` task) reads the subscriptions an event batch
may match in one query, claims each (subscription, trigger, event) window through a unique row
(`DeliveryWindow`), and writes a `Delivery` per claim; sending (`notification_deliver`, from the
`notifications.deliver` task) makes one attempt outside any transaction and records its outcome."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet

from executions import signing
from executions.policies import SkipReason
from notifications import messages, selectors, webhooks
from notifications.models import (
    FINAL_STATUSES,
    Channel,
    Delivery,
    DeliveryStatus,
    DeliveryWindow,
    Subscription,
)
from schedules.models import Trigger
from toolkit import clock, ids
from toolkit.events import Event, EventKind

logger = logging.getLogger(__name__)

DELIVER_TASK = "notifications.deliver"
#: The longest wait between two attempts (the deliver task's `retry_backoff_max`): a `retrying` delivery
#: untouched for longer than this plus the stuck grace has lost its retry message.
RETRY_BACKOFF_MAX_SECONDS = 600
#: What a subscription's owner may set (the API's and the admin's fields).
FIELDS = ("trigger", "event", "threshold", "skip_reasons", "channel", "email", "url", "slack", "active")
THRESHOLD_RANGE = (1, 10_000)


# --- Subscriptions ------------------------------------------------------------------------------------------


def subscription_validate(*, owner: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """The subscription `values` describe, checked: a `ValidationError` naming every bad field, or the
    values to save (defaults filled in). The admin's form and the API both come through here."""
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {name: values.get(name) for name in FIELDS}
    out["skip_reasons"] = list(values.get("skip_reasons") or [])
    out["email"] = (values.get("email") or "").strip()
    out["url"] = (values.get("url") or "").strip()
    out["slack"] = bool(values.get("slack"))
    out["active"] = True if values.get("active") is None else bool(values.get("active"))

    trigger = out["trigger"]
    if trigger is not None and not isinstance(trigger, Trigger):
        pk = ids.as_uuid(trigger)
        trigger = Trigger.objects.live().filter(pk=pk, owner=owner).first() if pk is not None else None
        if trigger is None:
            errors["trigger"] = ["no trigger of yours has this id"]
    elif trigger is not None and (trigger.owner_id != owner.pk or trigger.deleted_at is not None):
        errors["trigger"] = ["no trigger of yours has this id"]
    out["trigger"] = trigger

    event = out["event"]
    if event not in EventKind.values:
        errors["event"] = [f"must be one of: {', '.join(EventKind.values)}"]
    threshold = out["threshold"]
    if event == EventKind.FAILURES:
        low, high = THRESHOLD_RANGE
        if isinstance(threshold, bool) or not isinstance(threshold, int) or not low <= threshold <= high:
            errors["threshold"] = [f"`failures` needs a threshold, an integer from {low} to {high}"]
    elif threshold is not None:
        errors["threshold"] = ["only a `failures` subscription has a threshold"]
    reasons = out["skip_reasons"]
    if reasons and event != EventKind.SKIPPED:
        errors["skip_reasons"] = ["only a `skipped` subscription filters by reason"]
    elif any(not isinstance(r, str) or r not in SkipReason.values for r in reasons):
        errors["skip_reasons"] = [f"each must be one of: {', '.join(SkipReason.values)}"]
    else:
        out["skip_reasons"] = sorted(set(reasons))

    channel = out["channel"]
    if channel == Channel.EMAIL:
        out["email"] = out["email"] or (getattr(owner, "email", "") or "")
        if out["url"]:
            errors["url"] = ["an email subscription has no URL"]
        if out["slack"]:
            errors["slack"] = ["only a webhook has a Slack body"]
        if not out["email"]:
            errors["email"] = ["needed: your account has no email address"]
        else:
            try:
                EmailValidator()(out["email"])
            except ValidationError:
                errors["email"] = ["not a valid email address"]
    elif channel == Channel.WEBHOOK:
        if out["email"]:
            errors["email"] = ["a webhook subscription has no email address"]
        if not out["url"]:
            errors["url"] = ["a webhook needs a URL"]
        elif len(out["url"]) > 2000:
            errors["url"] = ["at most 2000 characters"]
        else:
            try:
                webhooks.check_url(out["url"])
            except webhooks.AddressRefused as exc:
                errors["url"] = [str(exc)]
    else:
        errors["channel"] = [f"must be one of: {', '.join(Channel.values)}"]
    if errors:
        raise ValidationError(errors)
    return out


def _after_subscriptions_change() -> None:
    transaction.on_commit(selectors.refresh_subscribed_kinds, robust=True)


def subscription_create(*, owner: Any, **values: Any) -> Subscription:
    fields = subscription_validate(owner=owner, values=values)
    with transaction.atomic():
        subscription = Subscription.objects.create(owner=owner, **fields)
        _after_subscriptions_change()
    return subscription


def subscription_update(*, subscription: Subscription, **values: Any) -> Subscription:
    """Change the given fields (the others keep their values), checked as a whole."""
    merged = {name: getattr(subscription, name) for name in FIELDS} | values
    # A field that belongs to another channel or event is dropped when that changes, unless it is given.
    stale = {
        "email": merged["channel"] != Channel.EMAIL,
        "url": merged["channel"] != Channel.WEBHOOK,
        "slack": merged["channel"] != Channel.WEBHOOK,
        "threshold": merged["event"] != EventKind.FAILURES,
        "skip_reasons": merged["event"] != EventKind.SKIPPED,
    }
    for name, drop in stale.items():
        if drop and name not in values:
            merged[name] = None
    fields = subscription_validate(owner=subscription.owner, values=merged)
    with transaction.atomic():
        for name, value in fields.items():
            setattr(subscription, name, value)
        subscription.save()
        _after_subscriptions_change()
    return subscription


def subscription_delete(*, subscription: Subscription) -> None:
    """Its deliveries stay in the log (their subscription emptied); its windows go with it."""
    with transaction.atomic():
        subscription.delete()
        _after_subscriptions_change()


# --- Routing ------------------------------------------------------------------------------------------------


def matches(subscription: Subscription, event: Event) -> bool:
    """Whether `subscription` wants to hear about `event` (owner and trigger scope, kind, threshold,
    reasons)."""
    if subscription.owner_id != event.owner_id:
        return False
    if subscription.trigger_id is not None and str(subscription.trigger_id) != event.trigger_id:
        return False
    if subscription.event == EventKind.FAILURES:
        return event.kind == EventKind.FAILED and event.failures == subscription.threshold
    if subscription.event == EventKind.SKIPPED and event.kind == EventKind.SKIPPED:
        return not subscription.skip_reasons or event.reason in subscription.skip_reasons
    return subscription.event == event.kind


def _claim_window(subscription: Subscription, trigger_id: uuid.UUID, kind: str, now: datetime) -> bool:
    """Claim the (subscription, trigger, event) window, atomically across concurrent routers: an expired
    window's row is moved forward by an UPDATE whose condition PostgreSQL re-checks under the row lock, a
    first one is INSERTed under the unique key. Whoever loses sends nothing. In the caller's transaction,
    so a rolled-back route releases its claims."""
    until = now + timedelta(seconds=settings.SCHEDULER_NOTIFY_WINDOW_SECONDS)
    rows = DeliveryWindow.objects.filter(subscription=subscription, trigger_id=trigger_id, event=kind)
    if rows.filter(until__lte=now).update(until=until):
        return True
    try:
        with transaction.atomic():
            DeliveryWindow.objects.create(
                subscription=subscription, trigger_id=trigger_id, event=kind, until=until
            )
    except IntegrityError:
        return False
    return True


def notification_route(*, events: Sequence[Event]) -> list[Delivery]:
    """Turn committed events into deliveries: one read of the subscriptions they may match, one of their
    triggers' names, a window claim per match, one INSERT; the sends go out after commit."""
    events = [e for e in events if ids.as_uuid(e.trigger_id) is not None]
    if not events:
        return []
    kinds = {e.kind for e in events} | (
        {EventKind.FAILURES} if any(e.kind == EventKind.FAILED for e in events) else set()
    )
    trigger_ids = {uuid.UUID(e.trigger_id) for e in events}
    now = clock.now()
    with transaction.atomic():
        candidates = list(
            Subscription.objects.filter(
                active=True, event__in=kinds, owner_id__in={e.owner_id for e in events}
            )
            .filter(Q(trigger__isnull=True) | Q(trigger_id__in=trigger_ids))
            .order_by("pk")
        )
        if not candidates:
            return []
        triggers = {
            row["id"]: row
            for row in Trigger.objects.filter(pk__in=trigger_ids).values(
                "id", "name", "workflow_id", "owner_id"
            )
        }
        deliveries: list[Delivery] = []
        for event in events:
            trigger = triggers.get(uuid.UUID(event.trigger_id))
            if trigger is None or trigger["owner_id"] != event.owner_id:
                continue
            for subscription in candidates:
                if not matches(subscription, event):
                    continue
                if not _claim_window(subscription, trigger["id"], subscription.event, now):
                    continue
                deliveries.append(
                    Delivery(
                        owner_id=subscription.owner_id,
                        subscription=subscription,
                        trigger_id=trigger["id"],
                        event=subscription.event,
                        channel=subscription.channel,
                        destination=subscription.destination,
                        payload=messages.compose(
                            subscription.event,
                            event,
                            trigger_name=trigger["name"],
                            workflow_id=trigger["workflow_id"],
                        ),
                        created_at=now,
                        updated_at=now,
                    )
                )
        Delivery.objects.bulk_create(deliveries)
        if deliveries:
            send_ids = [str(d.pk) for d in deliveries]
            transaction.on_commit(lambda: _send_tasks(send_ids), robust=True)
    return deliveries


def _send_tasks(delivery_ids: Iterable[str]) -> None:
    from celery import current_app as app

    for delivery_id in delivery_ids:
        app.signature(DELIVER_TASK, args=[delivery_id]).apply_async()


# --- Sending ------------------------------------------------------------------------------------------------


class _Outcome:
    def __init__(self, status: str, *, error: str = "", code: int | None = None) -> None:
        self.status, self.error, self.code = status, error, code


def _send_email(delivery: Delivery) -> _Outcome:
    send_mail(
        delivery.payload.get("subject", ""),
        delivery.payload.get("text", ""),
        None,  # DEFAULT_FROM_EMAIL
        [delivery.destination],
        fail_silently=False,
    )
    return _Outcome(DeliveryStatus.DELIVERED)


def webhook_body(delivery: Delivery, *, slack: bool) -> bytes:
    if slack:
        document: dict[str, Any] = {"text": delivery.payload.get("text", "")}
    else:
        document = {**delivery.payload.get("event", {}), "delivery": str(delivery.pk)}
    return json.dumps(document, separators=(",", ":")).encode()


def _send_webhook(delivery: Delivery, subscription: Subscription) -> _Outcome:
    body = webhook_body(delivery, slack=subscription.slack)
    headers = {
        signing.HEADER: signing.sign(body, secret=subscription.secret, now=clock.now()),
        "X-Scheduler-Event": delivery.event,
        "X-Scheduler-Delivery": str(delivery.pk),
    }
    answer = webhooks.post(
        delivery.destination, body, headers=headers, timeout=settings.SCHEDULER_NOTIFY_TIMEOUT_SECONDS
    )
    if 200 <= answer.status < 300:
        return _Outcome(DeliveryStatus.DELIVERED, code=answer.status)
    error = f"HTTP {answer.status}: {answer.body[:500]}".strip()
    # The receiver is busy or broken: try again. Anything else (a 3xx, a 4xx) will not change by retrying.
    retry = answer.status >= 500 or answer.status in {408, 429}
    return _Outcome(
        DeliveryStatus.RETRYING if retry else DeliveryStatus.FAILED, error=error, code=answer.status
    )


def notification_deliver(*, delivery_id: uuid.UUID | str) -> str | None:
    """One attempt at a delivery; returns its status afterwards (`retrying`: the task tries again with
    backoff), None for an unknown id. A final delivery is left alone, so a redelivered message sends
    nothing twice once it is recorded."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("subscription")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return None
        if delivery.status in FINAL_STATUSES:
            return delivery.status
        if delivery.status == DeliveryStatus.SENDING and delivery.updated_at > clock.now() - _stuck_grace():
            # Another attempt is in flight (a redelivered message beside the sweep's): it records the
            # outcome, and if its worker died the sweep sends again once the grace has passed.
            return delivery.status
        delivery.attempts += 1
        delivery.status, delivery.updated_at = DeliveryStatus.SENDING, clock.now()
        delivery.save(update_fields=["attempts", "status", "updated_at"])
    subscription = delivery.subscription
    try:
        if subscription is None:
            outcome = _Outcome(DeliveryStatus.FAILED, error="its subscription was deleted")
        elif delivery.channel == Channel.EMAIL:
            outcome = _send_email(delivery)
        else:
            outcome = _send_webhook(delivery, subscription)
    except webhooks.AddressRefused as exc:
        outcome = _Outcome(DeliveryStatus.REFUSED, error=str(exc))
    except Exception as exc:  # a connection refused, a timeout, an SMTP error: worth another try
        outcome = _Outcome(DeliveryStatus.RETRYING, error=f"{type(exc).__name__}: {exc}"[:1000])
    if (
        outcome.status == DeliveryStatus.RETRYING
        and delivery.attempts >= settings.SCHEDULER_NOTIFY_MAX_ATTEMPTS
    ):
        outcome.status = DeliveryStatus.FAILED
    now = clock.now()
    with transaction.atomic():
        Delivery.objects.filter(pk=delivery.pk).update(
            status=outcome.status,
            last_error=outcome.error,
            response_code=outcome.code,
            updated_at=now,
            delivered_at=now if outcome.status == DeliveryStatus.DELIVERED else None,
        )
    if outcome.status != DeliveryStatus.DELIVERED:
        logger.info(
            "notification %s %s (attempt %d): %s",
            delivery.pk,
            outcome.status,
            delivery.attempts,
            outcome.error,
        )
    return outcome.status


# --- Housekeeping -------------------------------------------------------------------------------------------


def _stuck_grace() -> timedelta:
    return timedelta(seconds=settings.SCHEDULER_NOTIFY_STUCK_SECONDS)


def notification_resend_stuck(*, batch_size: int = 500) -> int:
    """Send again the deliveries whose task message was lost (the broker was down at commit, a worker was
    killed mid-send, a retry's message vanished): `pending` or `sending` untouched for
    `SCHEDULER_NOTIFY_STUCK_SECONDS`, `retrying` for that plus the longest backoff. Each is claimed by
    compare-and-set: rows locked with SKIP LOCKED and re-checked, then moved back to `pending` with a fresh
    `updated_at`, so a concurrent sweep (which skips the locked rows, and after commit no longer finds them
    stale) cannot send it a second time. One whose lost attempt used the last try fails instead. Returns how
    many were sent again; the rest wait for the next sweep (bounded work per run)."""
    now = clock.now()
    cutoff = now - _stuck_grace()
    stale = Q(status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING], updated_at__lt=cutoff) | Q(
        status=DeliveryStatus.RETRYING,
        updated_at__lt=cutoff - timedelta(seconds=RETRY_BACKOFF_MAX_SECONDS),
    )
    with transaction.atomic():
        rows = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(stale)
            .order_by("created_at")
            .only("pk", "attempts")[:batch_size]
        )
        spent = [d.pk for d in rows if d.attempts >= settings.SCHEDULER_NOTIFY_MAX_ATTEMPTS]
        again = [str(d.pk) for d in rows if d.attempts < settings.SCHEDULER_NOTIFY_MAX_ATTEMPTS]
        Delivery.objects.filter(pk__in=spent).update(
            status=DeliveryStatus.FAILED,
            last_error="its last attempt was lost (worker killed or broker down) and no try is left",
            updated_at=now,
        )
        Delivery.objects.filter(pk__in=again).update(status=DeliveryStatus.PENDING, updated_at=now)
        if again:
            transaction.on_commit(lambda: _send_tasks(again), robust=True)
    if rows:
        logger.warning("notifications: %d lost deliveries sent again, %d failed", len(again), len(spent))
    return len(again)


def notification_prune(*, older_than: timedelta, batch_size: int = 1000) -> dict[str, int]:
    """Retention: delete final deliveries created more than `older_than` ago, and the windows that have
    expired, in batches of `batch_size`, each its own short transaction (a large purge never holds long
    locks). By `created_at`, which the (status, created_at) index serves; a delivery still going is never
    selected. An expired window is deleted only if it is still expired as it goes (a router that has just
    moved it forward keeps it); the next claim of a deleted one INSERTs it again."""
    now = clock.now()
    old = Delivery.objects.filter(status__in=FINAL_STATUSES, created_at__lt=now - older_than)
    expired = DeliveryWindow.objects.filter(until__lte=now)
    counts = {"deliveries": 0, "windows": 0}
    rows: QuerySet[Any]
    for name, rows in (("deliveries", old), ("windows", expired)):
        while ids := list[Any](rows.values_list("pk", flat=True)[:batch_size]):
            with transaction.atomic():
                counts[name] += rows.filter(pk__in=ids).delete()[0]
            if len(ids) < batch_size:
                break
    if any(counts.values()):
        logger.info("notifications: pruned %(deliveries)d deliveries, %(windows)d windows", counts)
    return counts
