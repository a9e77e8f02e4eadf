"""Subscriptions (who wants to hear about what, and how), the deliveries made for them (the log users and
operators read) and the windows that keep a noisy trigger from sending more than one notification per
subscription, trigger and event per `SCHEDULER_NOTIFY_WINDOW_SECONDS`."""

from __future__ import annotations

import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from toolkit.enums import Choices
from toolkit.events import EventKind


class Channel(Choices):
    """How a notification travels."""

    EMAIL = "email", "Email (Django's email backend)"
    WEBHOOK = "webhook", "Signed webhook (HMAC, X-Scheduler-Signature)"


class DeliveryStatus(Choices):
    """Where a delivery stands; `delivered`, `failed` and `refused` are final."""

    PENDING = "pending", "Pending: decided, not sent yet"
    SENDING = "sending", "Sending: an attempt is going"
    RETRYING = "retrying", "Retrying: an attempt failed, another will follow with backoff"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed for good (attempts used up, or the receiver refused it)"
    REFUSED = "refused", "Refused: the URL is not allowed (allow-list, or a private address at send time)"


FINAL_STATUSES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.REFUSED})


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Subscription(models.Model):
    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, help_text="Stable identifier."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_subscriptions",
        help_text="Who is notified; only they (and the admin) see the subscription and its deliveries.",
    )
    trigger = models.ForeignKey(
        "schedules.Trigger",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="notification_subscriptions",
        help_text="The trigger listened to; empty listens to every trigger of the owner.",
    )
    event = models.CharField(max_length=20, choices=EventKind.choices, help_text="What to be told about.")
    threshold = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="For `failures`: notify when this many runs in a row have failed (the streak reaching it).",
    )
    skip_reasons = models.JSONField(
        default=list,
        blank=True,
        help_text="For `skipped`: only these skip reasons (empty: any reason).",
    )
    channel = models.CharField(max_length=10, choices=Channel.choices, help_text="Email or signed webhook.")
    email = models.EmailField(blank=True, default="", help_text="Email: the address (default: the owner's).")
    url = models.URLField(
        max_length=2000,
        blank=True,
        default="",
        help_text="Webhook: the URL POSTed to; its host must be on the operator's allow-list "
        "(SCHEDULER_NOTIFY_WEBHOOK_HOSTS) and resolve to public addresses unless the operator allows them.",
    )
    slack = models.BooleanField(
        default=False, help_text='Webhook: send a Slack-compatible body, {"text": ...}, instead of the event.'
    )
    secret = models.CharField(
        max_length=100,
        default=new_secret,
        editable=False,
        help_text="Webhook: the HMAC key of X-Scheduler-Signature (t=<unix>,v1=<hex HMAC-SHA256 of "
        "'<t>.<body>'>), the same scheme as launches; check it on the receiving side.",
    )
    active = models.BooleanField(
        default=True, help_text="An inactive subscription is kept but sends nothing."
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was made.")
    updated_at = models.DateTimeField(auto_now=True, help_text="When it last changed.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "created_at", "id"], name="notify_sub_owner_created"),
            models.Index(fields=["owner", "event"], name="notify_sub_owner_event", condition=Q(active=True)),
            # The admin's list (every owner), newest first, and its filter by event.
            models.Index(fields=["created_at", "id"], name="notify_sub_created"),
            models.Index(fields=["event", "created_at"], name="notify_sub_event"),
        ]
        constraints = [
            models.CheckConstraint(
                name="notify_sub_threshold_positive",
                condition=Q(threshold__isnull=True) | Q(threshold__gte=1),
            ),
        ]

    def __str__(self) -> str:
        scope = self.trigger.name if self.trigger_id and self.trigger else "all triggers"
        return f"{self.event} of {scope} by {self.channel}"

    @property
    def destination(self) -> str:
        return self.url if self.channel == Channel.WEBHOOK else self.email


class Delivery(models.Model):
    id = models.UUIDField(
        primary_key=True,
        default=uuid.uuid4,
        editable=False,
        help_text="Stable identifier; sent as X-Scheduler-Delivery so a receiver can drop a repeat.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="notification_deliveries",
        help_text="Whose subscription it was made for.",
    )
    subscription = models.ForeignKey(
        Subscription,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="deliveries",
        help_text="The subscription it was made for (empty once that is deleted; the log stays).",
    )
    trigger = models.ForeignKey(
        "schedules.Trigger",
        on_delete=models.CASCADE,
        related_name="notification_deliveries",
        help_text="The trigger the event was about.",
    )
    event = models.CharField(max_length=20, choices=EventKind.choices, help_text="The event notified.")
    channel = models.CharField(max_length=10, choices=Channel.choices, help_text="Email or webhook.")
    destination = models.CharField(max_length=2000, help_text="The address or URL it goes to.")
    status = models.CharField(
        max_length=10,
        choices=DeliveryStatus.choices,
        default=DeliveryStatus.PENDING,
        help_text="Where it stands.",
    )
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts made so far.")
    last_error = models.TextField(blank=True, default="", help_text="Why the last attempt failed, if it did.")
    response_code = models.PositiveIntegerField(
        null=True, blank=True, help_text="Webhook: the HTTP status of the last answer."
    )
    payload = models.JSONField(default=dict, blank=True, help_text="What was sent: subject, text, the event.")
    created_at = models.DateTimeField(help_text="When the event was routed to this subscription.")
    updated_at = models.DateTimeField(help_text="When the delivery last changed.")
    delivered_at = models.DateTimeField(null=True, blank=True, help_text="When the receiver accepted it.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"
        indexes = [
            models.Index(fields=["owner", "created_at", "id"], name="notify_delivery_owner_created"),
            models.Index(fields=["created_at", "id"], name="notify_delivery_created"),
            models.Index(fields=["status", "created_at"], name="notify_delivery_status"),
            models.Index(fields=["event", "created_at"], name="notify_delivery_event"),
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.destination} ({self.status})"


class DeliveryWindow(models.Model):
    """The claim on one (subscription, trigger, event) until `until`: its unique key makes the "at most one
    per window" decision atomic across routers (`services._claim_window`)."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="+", help_text="Whose window."
    )
    trigger = models.ForeignKey(
        "schedules.Trigger", on_delete=models.CASCADE, related_name="+", help_text="About which trigger."
    )
    event = models.CharField(max_length=20, choices=EventKind.choices, help_text="Which event.")
    until = models.DateTimeField(help_text="No other notification for the three before this instant.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscription", "trigger", "event"], name="notify_window_once"),
        ]
        # Retention deletes the expired ones (`services.notification_prune`).
        indexes = [models.Index(fields=["until"], name="notify_window_until")]

    def __str__(self) -> str:
        return f"{self.event} of {self.trigger_id} until {self.until}"
