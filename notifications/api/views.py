"""`/api/v1/notifications/`: a user's subscriptions (CRUD through `notifications.services`) and the log of
their deliveries. Scoped to the owner for everyone: another user's id is a 404, as for triggers."""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.serializers import BaseSerializer

from executions.api.views import scoped_object
from notifications import services
from notifications.api.serializers import DeliverySerializer, SubscriptionSerializer, service_fields
from notifications.models import Channel, Delivery, DeliveryStatus, Subscription
from toolkit.events import EventKind


class SubscriptionFilter(filters.FilterSet):
    trigger = filters.UUIDFilter(field_name="trigger_id", help_text="Subscriptions to this trigger only.")
    event = filters.ChoiceFilter(choices=EventKind.choices)
    channel = filters.ChoiceFilter(choices=Channel.choices)

    class Meta:
        model = Subscription
        fields: list[str] = []


class DeliveryFilter(filters.FilterSet):
    subscription = filters.UUIDFilter(field_name="subscription_id")
    trigger = filters.UUIDFilter(field_name="trigger_id")
    event = filters.ChoiceFilter(choices=EventKind.choices)
    status = filters.ChoiceFilter(choices=DeliveryStatus.choices)

    class Meta:
        model = Delivery
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(summary="List your notification subscriptions", tags=["notifications"]),
    retrieve=extend_schema(summary="Get a subscription (with its webhook secret)", tags=["notifications"]),
    create=extend_schema(
        summary="Subscribe to a trigger's (or all your triggers') events", tags=["notifications"]
    ),
    update=extend_schema(summary="Replace a subscription", tags=["notifications"]),
    partial_update=extend_schema(summary="Change a subscription", tags=["notifications"]),
    destroy=extend_schema(summary="Delete a subscription (its delivery log stays)", tags=["notifications"]),
)
class SubscriptionViewSet(viewsets.ModelViewSet):
    queryset = Subscription.objects.none()  # tells the schema the model; get_queryset() scopes to the user
    lookup_value_regex = "[^/]+"
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter

    def get_queryset(self) -> QuerySet[Subscription]:
        return Subscription.objects.filter(owner_id=self.request.user.pk).select_related("owner")

    def get_object(self) -> Subscription:
        return scoped_object(self)

    def perform_create(self, serializer: BaseSerializer[Subscription]) -> None:
        fields = service_fields(serializer.validated_data)
        serializer.instance = services.subscription_create(owner=self.request.user, **fields)

    def perform_update(self, serializer: BaseSerializer[Subscription]) -> None:
        fields = service_fields(serializer.validated_data)
        serializer.instance = services.subscription_update(subscription=self.get_object(), **fields)

    def perform_destroy(self, instance: Subscription) -> None:
        services.subscription_delete(subscription=instance)


@extend_schema_view(
    list=extend_schema(summary="List your notification deliveries", tags=["notifications"]),
    retrieve=extend_schema(summary="Get a delivery", tags=["notifications"]),
)
class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Delivery.objects.none()
    lookup_value_regex = "[^/]+"
    serializer_class = DeliverySerializer
    filterset_class = DeliveryFilter

    def get_queryset(self) -> QuerySet[Delivery]:
        return Delivery.objects.filter(owner_id=self.request.user.pk)

    def get_object(self) -> Delivery:
        return scoped_object(self)
