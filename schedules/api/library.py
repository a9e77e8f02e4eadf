"""`/api/v1/calendars/` and `/api/v1/templates/`: what a user keeps beside their triggers. Thin like the
trigger views: scoped querysets (another user's calendar or template is a 404; a shared calendar is
readable by all and changed only by its owner or staff), input parsed here, every rule in
`schedules.services`."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from executions.api.views import scoped_object
from schedules import services
from schedules.api.serializers import DomainText, JSONObjectField, TriggerSerializer
from schedules.models import Calendar, Trigger, TriggerTemplate
from toolkit import ids
from toolkit.api import InstantModelSerializer, help_of

# --- Calendars ------------------------------------------------------------------------------------------


class HolidaysSerializer(serializers.Serializer):
    country = serializers.CharField(help_text="ISO 3166 country code, e.g. DE, US.")
    subdivision = serializers.CharField(
        required=False, allow_blank=True, help_text="State or province code, e.g. BY, CA (optional)."
    )
    years = serializers.ListField(
        child=serializers.IntegerField(),
        required=False,
        help_text="Years to include (default: this and next).",
    )


class CalendarSerializer(InstantModelSerializer):
    """A named set of excluded dates. On input give at most one of `dates`, `ics` (the text of an ICS
    file) or `holidays` (`{"country": "DE", "subdivision": "BY", "years": [2026]}`)."""

    owner = serializers.CharField(
        source="owner.get_username", read_only=True, help_text=help_of(Calendar, "owner")
    )
    name = DomainText(
        max_length=200, allow_blank=True, trim_whitespace=False, help_text=help_of(Calendar, "name")
    )
    description = DomainText(required=False, allow_blank=True, help_text=help_of(Calendar, "description"))
    shared = serializers.JSONField(required=False, help_text=help_of(Calendar, "shared"))
    dates = serializers.JSONField(required=False, help_text=help_of(Calendar, "dates"))
    ics = serializers.JSONField(
        write_only=True, required=False, help_text="The text of an ICS file to import."
    )
    holidays = serializers.JSONField(
        write_only=True,
        required=False,
        help_text='A country\'s public holidays: {"country": "DE", "years": [2026]}.',
    )
    date_count = serializers.SerializerMethodField(help_text="How many dates it excludes.")

    class Meta:
        model = Calendar
        fields = (
            "id", "name", "description", "owner", "shared", "source", "country", "subdivision", "dates",
            "date_count", "ics", "holidays", "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("id", "source", "country", "subdivision", "created_at", "updated_at")

    def get_date_count(self, calendar: Calendar) -> int:
        return len(calendar.dates or [])

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in self.fields or self.fields[k].read_only)
            unknown = [
                k for k in unknown if k not in ("id", "owner", "date_count", *self.Meta.read_only_fields)
            ]
            if unknown:
                raise serializers.ValidationError({unknown[0]: ["is not a field that can be set"]})
        return super().to_internal_value(data)


class CalendarViewSet(viewsets.ModelViewSet):
    """Your calendars and the shared ones. Exclude one from a trigger with its `excluded_calendar`."""

    queryset = Calendar.objects.none()
    serializer_class = CalendarSerializer
    lookup_value_regex = "[^/]+"
    filterset_class = None

    def get_queryset(self):
        return Calendar.objects.visible_to(self.request.user).select_related("owner").order_by("name", "id")

    def get_object(self) -> Calendar:
        calendar = cast(Calendar, scoped_object(self))
        if self.request.method not in ("GET", "HEAD", "OPTIONS"):
            user = self.request.user
            if calendar.owner_id != user.pk and not user.is_staff:
                raise PermissionDenied("a shared calendar can be changed only by its owner or staff")
        return calendar

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        serializer.instance = services.calendar_create(owner=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        calendar = cast(Calendar, serializer.instance)
        serializer.instance = services.calendar_update(
            calendar=calendar, actor=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance: Calendar) -> None:
        services.calendar_delete(calendar=instance)


# --- Templates ------------------------------------------------------------------------------------------


class TemplateSerializer(InstantModelSerializer):
    """Saved trigger settings. Create one from `definition` (trigger fields as the triggers API takes them)
    or from `trigger` (the id of one of your triggers, whose settings are copied)."""

    owner = serializers.CharField(
        source="owner.get_username", read_only=True, help_text=help_of(TriggerTemplate, "owner")
    )
    name = DomainText(
        max_length=200, allow_blank=True, trim_whitespace=False, help_text=help_of(TriggerTemplate, "name")
    )
    description = DomainText(
        required=False, allow_blank=True, help_text=help_of(TriggerTemplate, "description")
    )
    definition = JSONObjectField(required=False, help_text=help_of(TriggerTemplate, "definition"))
    trigger = serializers.CharField(
        write_only=True, required=False, help_text="Create only: copy the settings of this trigger of yours."
    )

    class Meta:
        model = TriggerTemplate
        fields = ("id", "name", "description", "owner", "definition", "trigger", "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")


class FromTemplateSerializer(serializers.Serializer):
    name = serializers.CharField(
        required=False, help_text="The new trigger's name (default: the template's)."
    )


class TemplateViewSet(viewsets.ModelViewSet):
    """Your saved trigger settings (staff see all). The presets at `/api/v1/presets/` stay the read-only
    defaults."""

    queryset = TriggerTemplate.objects.none()
    serializer_class = TemplateSerializer
    lookup_value_regex = "[^/]+"
    filterset_class = None

    def get_queryset(self):
        return (
            TriggerTemplate.objects.visible_to(self.request.user)
            .select_related("owner")
            .order_by("name", "id")
        )

    def get_object(self) -> TriggerTemplate:
        return cast(TriggerTemplate, scoped_object(self))

    def perform_create(self, serializer: serializers.BaseSerializer) -> None:
        fields = dict(serializer.validated_data)
        trigger_id = fields.pop("trigger", None)
        trigger = None
        if trigger_id is not None:
            pk = ids.as_uuid(trigger_id)
            visible = Trigger.objects.visible_to(self.request.user)
            trigger = visible.filter(pk=pk).first() if pk is not None else None
            if trigger is None:
                raise serializers.ValidationError({"trigger": [f"no trigger with id {trigger_id}"]})
        serializer.instance = services.template_save(owner=self.request.user, trigger=trigger, **fields)

    def perform_update(self, serializer: serializers.BaseSerializer) -> None:
        fields = dict(serializer.validated_data)
        if "trigger" in fields:
            raise serializers.ValidationError({"trigger": ["only when creating a template"]})
        template = cast(TriggerTemplate, serializer.instance)
        serializer.instance = services.template_update(template=template, **fields)

    def perform_destroy(self, instance: TriggerTemplate) -> None:
        services.template_delete(template=instance)

    @extend_schema(
        summary="Create a trigger from a template",
        description=(
            "The body holds trigger fields to set over the template's (at least what it lacks, such as a "
            "name); the result is validated like any new trigger."
        ),
        request=TriggerSerializer,
        responses={201: TriggerSerializer},
        tags=["templates"],
    )
    @action(
        detail=True, methods=["post"], url_path="create-trigger", filterset_class=None, pagination_class=None
    )
    def create_trigger(self, request: Request, pk: str | None = None) -> Response:
        template = self.get_object()
        body = TriggerSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        trigger = services.trigger_register_from_template(
            owner=request.user, template=template, **body.validated_data
        )
        return Response(TriggerSerializer(trigger).data, status=status.HTTP_201_CREATED)
