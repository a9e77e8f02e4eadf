"""Subscription and delivery shapes. Validation is the domain's (`services.subscription_validate`), so the
admin and the API refuse the same things with the same words; these only carry the fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from notifications.models import Channel, Delivery, Subscription
from toolkit.api import InstantModelSerializer, help_of
from toolkit.events import EventKind


def service_fields(validated: Mapping[str, Any]) -> dict[str, Any]:
    """Validated fields under the services' names (`trigger` is an id they look up for the owner)."""
    fields = dict(validated)
    if "trigger_id" in fields:
        fields["trigger"] = fields.pop("trigger_id")
    return fields


class SubscriptionSerializer(InstantModelSerializer):
    trigger = serializers.UUIDField(
        source="trigger_id", allow_null=True, required=False, help_text=help_of(Subscription, "trigger")
    )
    event = serializers.ChoiceField(choices=EventKind.choices, help_text=help_of(Subscription, "event"))
    channel = serializers.ChoiceField(choices=Channel.choices, help_text=help_of(Subscription, "channel"))
    threshold = serializers.IntegerField(
        allow_null=True, required=False, help_text=help_of(Subscription, "threshold")
    )
    skip_reasons = serializers.ListField(
        child=serializers.CharField(), required=False, help_text=help_of(Subscription, "skip_reasons")
    )
    email = serializers.CharField(required=False, allow_blank=True, help_text=help_of(Subscription, "email"))
    url = serializers.CharField(required=False, allow_blank=True, help_text=help_of(Subscription, "url"))

    class Meta:
        model = Subscription
        fields = (
            "id", "trigger", "event", "threshold", "skip_reasons", "channel", "email", "url", "slack",
            "active", "secret", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("id", "secret", "created_at", "updated_at")


class DeliverySerializer(InstantModelSerializer):
    class Meta:
        model = Delivery
        fields = (
            "id", "subscription", "trigger", "event", "channel", "destination", "status", "attempts",
            "last_error", "response_code", "payload", "created_at", "updated_at", "delivered_at",
        )  # fmt: skip
        read_only_fields = fields
