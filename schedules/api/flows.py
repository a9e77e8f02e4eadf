"""The flows scheduling API (`/api/_flows/{name}/schedule`, `…/schedules`, `…/schedules/{id}`), kept so
clients of the flows system it replaces keep working: its bodies (`cron` or `delay` in milliseconds,
`input`, `metadata`), its answers (`{id, flowName, queue, step, schedule, nextRun, metadata, createdAt}`, a
bare list, `{success, message}`), its status codes (200 for each) and its error body (`{error, statusCode,
statusMessage, message, data}`, as its Nitro server answered).

An adapter, not a second implementation: a flow's schedule is a trigger whose workflow is the flow, made,
listed and deleted through the same services, validated by the same domain (the messages are the API's
own, only the field names are the flows API's: `cron`, `delay`, `metadata.description`), fired through the
same (trigger, slot) key, and scoped to its owner (someone else's schedule is a 404).

What that system had and this one maps: its `queue` is the launch target the runs go to, its `step` the
flow itself (runs start the flow, not one of its steps), its `id` the trigger's id. Cron is read in UTC
(that system used the server's zone). Its list left out one-off (delay) schedules, a limitation of its
queue it documented; here a one-off is listed until it has run.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from django.db.models import F
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from schedules import services, validation
from schedules.api.serializers import DomainInteger, DomainText, JSONObjectField
from schedules.models import Trigger, TriggerKind, TriggerStatus
from toolkit.api import BODY_FIELD, NON_FIELD, AnyContentJSONParser, GuardedJSONParser, InstantField

# --- Bodies -----------------------------------------------------------------------------------------------


class FlowScheduleRequestSerializer(serializers.Serializer):
    """What that system's `POST …/schedule` read. Keys it did not know are ignored, as it ignored them."""

    cron = DomainText(
        required=False, allow_null=True, allow_blank=True, max_length=200,
        help_text="Cron pattern (5 fields, or 6 with seconds first), read in UTC. Exclusive with delay.",
    )  # fmt: skip
    delay = DomainInteger(
        required=False, allow_null=True, min_value=1,
        help_text="Run once, this many milliseconds from now. Exclusive with cron.",
    )  # fmt: skip
    input = JSONObjectField(required=False, allow_null=True, help_text="The flow's input (an object).")
    metadata = JSONObjectField(
        required=False,
        allow_null=True,
        help_text="Kept with the schedule and passed to each run; `description` describes the schedule.",
    )


class FlowScheduleOptionsSerializer(serializers.Serializer):
    cron = serializers.CharField(required=False, help_text="The cron pattern of a recurring schedule.")
    delay = serializers.IntegerField(required=False, help_text="The delay (ms) a one-off was made with.")
    every = serializers.IntegerField(
        required=False, help_text="Milliseconds between runs (an interval trigger made through /api/v1/)."
    )


class FlowScheduleSerializer(serializers.Serializer):
    id = serializers.CharField(source="pk", help_text="The schedule's id; use it to delete it.")
    flowName = serializers.CharField(source="workflow_id")
    queue = serializers.CharField(source="target", help_text="The launch target the runs go to.")
    step = serializers.CharField(source="workflow_id", help_text="Runs start the flow itself.")
    schedule = serializers.SerializerMethodField()
    nextRun = InstantField(
        source="next_run_at", required=False, help_text="Next run (UTC); absent when there is none."
    )
    metadata = JSONObjectField(help_text="The metadata it was made with.")
    createdAt = InstantField(source="created_at")

    @extend_schema_field(FlowScheduleOptionsSerializer)
    def get_schedule(self, trigger: Trigger) -> dict[str, Any]:
        return schedule_of(trigger)

    def to_representation(self, instance: Trigger) -> dict[str, Any]:
        # That system left `nextRun` out (undefined) when there was none; null would be a new shape.
        data = super().to_representation(instance)
        if data.get("nextRun") is None:
            data.pop("nextRun", None)
        return data


class DeletedSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()


def schedule_of(trigger: Trigger) -> dict[str, Any]:
    """That system's schedule options. A one-off's delay is counted from its last schedule edit, which is
    the instant the delay was added to when it was made (`trigger_register` uses one `now` for both)."""
    if trigger.kind == TriggerKind.CRON:
        return {"cron": trigger.cron_expression}
    if trigger.kind == TriggerKind.ONCE and trigger.run_at is not None:
        since = trigger.schedule_changed_at or trigger.created_at
        return {"delay": max(0, round((trigger.run_at - since).total_seconds() * 1000))}
    return {"every": (trigger.interval_seconds or 0) * 1000}


# --- Views ------------------------------------------------------------------------------------------------

EXAMPLE_ID = "5b0f3c2a-9d41-4e7a-8f6e-2c1d7a9b4e60"
EXAMPLE_SCHEDULE = {
    "id": EXAMPLE_ID,
    "flowName": "cleanup-flow",
    "queue": "default",
    "step": "cleanup-flow",
    "schedule": {"cron": "0 2 * * *"},
    "nextRun": "2026-03-03T02:00:00Z",
    "metadata": {"description": "Daily cleanup job", "createdBy": "admin"},
    "createdAt": "2026-03-02T12:00:00.120000Z",
}
NAME_PARAMETER = OpenApiParameter("name", str, OpenApiParameter.PATH, description="The flow's name.")


class FlowsView(APIView):
    # Read as JSON whatever the declared type: `curl -d` without its -H header sends a form type.
    parser_classes = [GuardedJSONParser, AnyContentJSONParser]
    error_style = "flows"
    error_field_names = {
        "cron_expression": "cron",
        "delay_ms": "delay",
        "run_at": "delay",
        "workflow_id": "name",
        "description": "metadata.description",
    }


def _flow_name(name: str) -> str:
    """The flow's name as the domain stores it (a workflow id). A name no trigger could have (a NUL, too
    long) is a 400 naming `name`, rather than a query the database refuses (a 500)."""
    return validation.clean_fields({"workflow_id": name})["workflow_id"]


def _flow_triggers(request: Request, name: str):
    """The caller's live triggers that start flow `name` (staff: everyone's)."""
    return Trigger.objects.visible_to(request.user).filter(workflow_id=_flow_name(name))


class FlowScheduleCreateView(FlowsView):
    @extend_schema(
        operation_id="flows_schedule_create",
        summary="Schedule a flow (cron or one-off delay)",
        parameters=[NAME_PARAMETER],
        request={"application/json": FlowScheduleRequestSerializer},
        responses={200: FlowScheduleSerializer},
        tags=["flows"],
        examples=[
            OpenApiExample(
                "Daily at 2 AM",
                value={
                    "cron": "0 2 * * *",
                    "input": {"retentionDays": 30},
                    "metadata": {"description": "Daily cleanup job", "createdBy": "admin"},
                },
                request_only=True,
            ),
            OpenApiExample(
                "Once, in 5 minutes",
                value={"delay": 300000, "input": {"userId": "123", "message": "Check your email"}},
                request_only=True,
            ),
            OpenApiExample(
                "Scheduled",
                value=EXAMPLE_SCHEDULE,
                response_only=True,
            ),
        ],
    )
    def post(self, request: Request, name: str) -> Response:
        if not isinstance(request.data, Mapping):
            raise ValidationError({BODY_FIELD: ["must be a JSON object"]})
        body = FlowScheduleRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        cron, delay = data.get("cron"), data.get("delay")
        # That system's own checks, with its words; truthiness as it tested them (a delay of 0 is none).
        if cron and delay:
            raise ValidationError({NON_FIELD: ["Cannot specify both cron and delay"]})
        if not cron and not delay:
            raise ValidationError({NON_FIELD: ["Must specify either cron or delay"]})
        metadata = data.get("metadata") or {}
        fields: dict[str, Any] = {
            "name": name,
            "workflow_id": name,
            "input": data.get("input") or {},
            "metadata": metadata,  # the domain insists on an object and says so, naming `metadata`
        }
        if isinstance(metadata, Mapping):
            fields["description"] = metadata.get("description") or ""
        if cron:
            fields.update(kind=TriggerKind.CRON, cron_expression=cron)
        else:
            fields.update(kind=TriggerKind.ONCE, delay_ms=delay)
        trigger = services.trigger_register(owner=request.user, **fields)
        answer = FlowScheduleSerializer(trigger).data
        answer["schedule"] = {"cron": cron} if cron else {"delay": delay}  # exactly what was asked
        return Response(answer)


class FlowScheduleListView(FlowsView):
    @extend_schema(
        operation_id="flows_schedules_list",
        summary="A flow's schedules, soonest next run first",
        parameters=[NAME_PARAMETER],
        responses={200: FlowScheduleSerializer(many=True)},
        tags=["flows"],
        examples=[OpenApiExample("Schedules", value=[EXAMPLE_SCHEDULE], response_only=True)],
    )
    def get(self, request: Request, name: str) -> Response:
        # A finished one-off leaves the list, as that system's delayed job did once it had run.
        rows = (
            _flow_triggers(request, name)
            .exclude(status=TriggerStatus.COMPLETED)
            .order_by(F("next_run_at").asc(nulls_last=True), "created_at")
        )
        return Response(FlowScheduleSerializer(rows, many=True).data)


class FlowScheduleDeleteView(FlowsView):
    @extend_schema(
        operation_id="flows_schedule_delete",
        summary="Delete a flow's schedule",
        parameters=[
            NAME_PARAMETER,
            OpenApiParameter("id", str, OpenApiParameter.PATH, description="The schedule's id."),
        ],
        responses={200: DeletedSerializer},
        tags=["flows"],
        examples=[
            OpenApiExample(
                "Deleted",
                value={"success": True, "message": "Schedule deleted successfully"},
                response_only=True,
            )
        ],
    )
    def delete(self, request: Request, name: str, id: str) -> Response:
        try:
            trigger_id = uuid.UUID(id)
        except ValueError:
            trigger_id = None
        trigger = _flow_triggers(request, name).filter(pk=trigger_id).first() if trigger_id else None
        if trigger is None:
            # Unknown, someone else's, of another flow, or already deleted: all alike, nothing to learn.
            raise NotFound("Schedule not found")
        services.trigger_delete(trigger=trigger)
        return Response({"success": True, "message": "Schedule deleted successfully"})
