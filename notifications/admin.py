"""Subscriptions (saved through `notifications.services`, the API's checks and words) and the delivery log
(read-only: what was sent, to where, how it went)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from executions.policies import SkipReason
from notifications import services
from notifications.models import Delivery, Subscription
from toolkit.admin import EstimatedCountPaginator


class SubscriptionAdminForm(forms.ModelForm):
    url = forms.URLField(
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text=Subscription._meta.get_field("url").help_text,
    )
    skip_reasons = forms.MultipleChoiceField(
        choices=SkipReason.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=Subscription._meta.get_field("skip_reasons").help_text,
    )

    class Meta:
        model = Subscription
        fields = (
            "owner",
            "trigger",
            "event",
            "threshold",
            "skip_reasons",
            "channel",
            "email",
            "url",
            "slack",
            "active",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        owner = data.get("owner") or getattr(self.instance, "owner", None)
        if owner is None:
            return data
        try:
            data.update(services.subscription_validate(owner=owner, values=data))
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        return data


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionAdminForm
    list_display = (
        "owner",
        "trigger",
        "event",
        "threshold",
        "channel",
        "destination",
        "slack",
        "active",
        "created_at",
    )
    list_filter = ("event", "channel", "active")
    list_select_related = ("owner", "trigger")
    search_fields = ("owner__username", "trigger__name", "email", "url")
    autocomplete_fields = ("owner",)
    raw_id_fields = ("trigger",)
    readonly_fields = ("secret", "created_at", "updated_at")

    def save_model(self, request: HttpRequest, obj: Subscription, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data.get(name) for name in services.FIELDS}
        if change:
            saved = services.subscription_update(subscription=obj, **fields)
        else:
            saved = services.subscription_create(owner=form.cleaned_data["owner"], **fields)
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: Subscription) -> None:
        services.subscription_delete(subscription=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        for subscription in queryset:
            services.subscription_delete(subscription=subscription)


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = (
        "created_at", "owner", "trigger", "event", "channel", "destination", "status", "attempts",
        "response_code", "last_error",
    )  # fmt: skip
    list_filter = ("status", "event", "channel")
    search_fields = ("owner__username", "trigger__name", "destination")
    list_select_related = ("owner", "trigger")
    ordering = ("-created_at",)
    show_full_result_count = False  # the log grows like the executions: no full count per page load
    paginator = EstimatedCountPaginator

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
