"""Adapter for the Python cron service this one replaces (`/schedules/…`, `/run-launcher/start`), as its
README documents them: client-chosen schedule ids, `cron_expr` of 5 or 6 fields with seconds first,
`jitter_ms`, its overlap (allow/skip/queue) and catch-up (none/fire_immediately/spread) policies.

A schedule is a trigger like any other. Its id is the client's `schedule_id`, mapped to the trigger's
primary key with uuid5 over (owner, schedule_id), so the same id is the same trigger for its owner and
another owner's id can never reach it; the client's words (`schedule_id`, `version`, `user_id`, the
`cron_expr` as sent) are kept in `metadata.cron_service` and given back as sent. That system's 5-field
expressions are seconds-first without a day of week (`0 0 * * *` is "every hour at minute 0" there), so
they become the 6-field `s m h dom mon *`. The owner is the authenticated caller; `user_id` is that
system's label for the user and filters lists. Errors are the API's own (400 naming the field in that
system's words, 404 `{"detail"}`), never a 500.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import services as execution_services
from executions.api.views import visible_executions
from schedules import services
from schedules.api.serializers import JSONObjectField
from schedules.models import CatchupPolicy, OverlapPolicy, Trigger, TriggerKind, TriggerStatus
from toolkit import clock
from toolkit.api import InstantField

NAMESPACE = uuid.UUID("6f1b7a2e-3c4d-4e5f-8a9b-0c1d2e3f4a5b")
META = "cron_service"
LIST_LIMIT_MAX = 1000
ARRAY = {"type": "array", "items": {"type": "object"}}  # that system's lists are bare JSON arrays
ERROR_FIELDS = {
    "cron_expression": "cron_expr", "jitter_seconds": "jitter_ms", "name": "workflow_id",
    "metadata": "schedule_id",
}  # fmt: skip


def trigger_id_of(owner: Any, schedule_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{owner.pk}:{schedule_id}")


def _expression(cron_expr: str) -> str:
    fields = cron_expr.split()
    if len(fields) == 5:
        return " ".join([*fields, "*"])
    if len(fields) == 6:
        return " ".join(fields)
    raise serializers.ValidationError({"cron_expr": ["must have 5 or 6 fields, seconds first"]})


class UpsertSerializer(serializers.Serializer):
    schedule_id = serializers.CharField(required=False, max_length=200, help_text="Client-chosen id.")
    workflow_id = serializers.CharField(max_length=200)
    version = serializers.IntegerField(required=False, default=1, min_value=0)
    user_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    cron_expr = serializers.CharField(max_length=200, help_text="5 or 6 fields, seconds first.")
    timezone = serializers.CharField(required=False, default="UTC", max_length=64)
    start_at = InstantField(required=False, allow_null=True, default=None)
    end_at = InstantField(required=False, allow_null=True, default=None)
    jitter_ms = serializers.IntegerField(required=False, default=0, min_value=0, max_value=86_400_000)
    overlap_policy = serializers.ChoiceField(choices=["allow", "skip", "queue"], default="skip")
    catchup_policy = serializers.ChoiceField(choices=["none", "fire_immediately", "spread"], default="none")
    input = JSONObjectField(required=False, default=dict)


def schedule_of(trigger: Trigger) -> dict[str, Any]:
    """The schedule in that system's words."""
    kept = (trigger.metadata or {}).get(META, {})
    return {
        "schedule_id": kept.get("schedule_id", str(trigger.pk)),
        "workflow_id": trigger.workflow_id,
        "version": kept.get("version", 1),
        "user_id": kept.get("user_id", ""),
        "cron_expr": kept.get("cron_expr", trigger.cron_expression),
        "timezone": trigger.timezone,
        "start_at": clock.iso_z(trigger.start_at),
        "end_at": clock.iso_z(trigger.end_at),
        "jitter_ms": trigger.jitter_seconds * 1000,
        "overlap_policy": trigger.overlap_policy,
        "catchup_policy": trigger.catchup_policy,
        "paused": trigger.status == TriggerStatus.PAUSED,
        "next_run_at": clock.iso_z(trigger.next_run_at),
        "created_at": clock.iso_z(trigger.created_at),
        "updated_at": clock.iso_z(trigger.updated_at),
    }


class CronServiceView(APIView):
    error_field_names = ERROR_FIELDS

    def schedule(self, request: Request, schedule_id: str) -> Trigger:
        found = Trigger.objects.visible_to(request.user).filter(pk=trigger_id_of(request.user, schedule_id))
        trigger = found.first()
        if trigger is None:
            raise NotFound("Schedule not found")
        return trigger


class UpsertView(CronServiceView):
    @extend_schema(
        summary="Create or update a schedule (cron service adapter)",
        request=UpsertSerializer,
        responses={200: dict},
        tags=["adapters"],
        examples=[
            OpenApiExample(
                "Documented",
                value={"workflow_id": "example_workflow", "version": 1, "user_id": "user123",
                       "cron_expr": "0 */5 * * * *", "timezone": "America/New_York"},
                request_only=True,
            )
        ],
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        body = UpsertSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        schedule_id = data.get("schedule_id") or str(uuid.uuid4())
        fields: dict[str, Any] = {
            "kind": TriggerKind.CRON,
            "workflow_id": data["workflow_id"],
            "name": f"{data['workflow_id']} v{data['version']}"[:200],
            "cron_expression": _expression(data["cron_expr"]),
            "timezone": data["timezone"],
            "start_at": data["start_at"],
            "end_at": data["end_at"],
            "jitter_seconds": math.ceil(data["jitter_ms"] / 1000),
            "overlap_policy": OverlapPolicy(data["overlap_policy"]),
            "catchup_policy": CatchupPolicy(data["catchup_policy"]),
            "input": data["input"],
            "metadata": {
                META: {
                    "schedule_id": schedule_id, "version": data["version"], "user_id": data["user_id"],
                    "cron_expr": data["cron_expr"],
                }
            },
        }  # fmt: skip
        pk = trigger_id_of(request.user, schedule_id)
        with transaction.atomic():
            existing = Trigger.objects.filter(pk=pk, owner_id=request.user.pk).first()
            if existing is None:
                trigger = services.trigger_register(owner=request.user, id=pk, **fields)
            elif existing.deleted_at is not None:
                trigger = services.trigger_restore(trigger=existing, **fields)
            else:
                trigger = services.trigger_update(trigger=existing, **fields)
        return Response(schedule_of(trigger))


class CronServicePauseSerializer(serializers.Serializer):
    paused = serializers.BooleanField()


class PauseView(CronServiceView):
    @extend_schema(summary="Pause or unpause a schedule", request=CronServicePauseSerializer,
                   responses={200: dict}, tags=["adapters"], operation_id="cronsvc_pause")  # fmt: skip
    def post(self, request: Request, schedule_id: str) -> Response:
        body = CronServicePauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        trigger = self.schedule(request, schedule_id)
        if body.validated_data["paused"] and trigger.status == TriggerStatus.ACTIVE:
            trigger = services.trigger_pause(trigger=trigger, reason="paused through the cron service API")
        elif not body.validated_data["paused"] and trigger.status == TriggerStatus.PAUSED:
            trigger = services.trigger_resume(trigger=trigger)
        return Response(schedule_of(trigger))


class ScheduleView(CronServiceView):
    @extend_schema(summary="Get a schedule", responses={200: dict}, tags=["adapters"],
                   operation_id="cronsvc_get")  # fmt: skip
    def get(self, request: Request, schedule_id: str) -> Response:
        return Response(schedule_of(self.schedule(request, schedule_id)))

    @extend_schema(
        summary="Delete a schedule (its runs stay readable)", responses={200: dict}, tags=["adapters"]
    )
    def delete(self, request: Request, schedule_id: str) -> Response:
        services.trigger_delete(trigger=self.schedule(request, schedule_id))
        return Response({"deleted": True, "schedule_id": schedule_id})


class ListQuery(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=200)
    workflow_id = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, default=100, min_value=1, max_value=LIST_LIMIT_MAX)


class ScheduleListView(CronServiceView):
    @extend_schema(summary="List schedules", parameters=[ListQuery], responses={200: ARRAY},
                   tags=["adapters"], operation_id="cronsvc_list")  # fmt: skip
    def get(self, request: Request) -> Response:
        query = ListQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = (
            Trigger.objects.visible_to(request.user)
            .filter(metadata__has_key=META)
            .order_by("-created_at", "-id")
        )
        if "workflow_id" in query.validated_data:
            rows = rows.filter(workflow_id=query.validated_data["workflow_id"])
        if "user_id" in query.validated_data:
            rows = rows.filter(**{f"metadata__{META}__user_id": query.validated_data["user_id"]})
        return Response([schedule_of(t) for t in rows[: query.validated_data["limit"]]])


class RunsQuery(serializers.Serializer):
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=LIST_LIMIT_MAX)


def run_of(execution: Any, schedule_id: str | None) -> dict[str, Any]:
    return {
        "run_id": str(execution.pk),
        "schedule_id": schedule_id,
        "workflow_id": execution.trigger.workflow_id,
        "scheduled_for": clock.iso_z(execution.slot),
        "status": execution.status,
        "skip_reason": execution.skip_reason or None,
        "idempotency_key": execution.idempotency_key or None,
        "started_at": clock.iso_z(execution.started_at),
        "finished_at": clock.iso_z(execution.finished_at),
        "error": execution.error or None,
    }


class RunsView(CronServiceView):
    @extend_schema(summary="A schedule's runs, newest first", parameters=[RunsQuery], responses={200: ARRAY},
                   tags=["adapters"], operation_id="cronsvc_runs")  # fmt: skip
    def get(self, request: Request, schedule_id: str) -> Response:
        query = RunsQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        trigger = self.schedule(request, schedule_id)
        rows = visible_executions(request.user).filter(trigger=trigger).order_by("-created_at", "-id")
        return Response([run_of(e, schedule_id) for e in rows[: query.validated_data["limit"]]])


class LaunchQuery(serializers.Serializer):
    workflow_id = serializers.CharField(max_length=200)
    version = serializers.IntegerField(required=False, default=1, min_value=0)
    user_id = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    scheduled_for = InstantField(required=False, allow_null=True, default=None)
    idempotency_key = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class RunLauncherView(CronServiceView):
    """`POST /run-launcher/start?…`: one run of a workflow now, through a paused one-off that holds that
    workflow's launches (one per owner, workflow and version), so the run is an ordinary manual execution
    and `idempotency_key` makes a retried call return the same run (200) instead of a second one (201)."""

    @extend_schema(summary="Start a workflow run now", parameters=[LaunchQuery], request=None,
                   responses={200: dict, 201: dict}, tags=["adapters"])  # fmt: skip
    def post(self, request: Request) -> Response:
        query = LaunchQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        holder_id = f"run-launcher:{data['workflow_id']}:v{data['version']}"
        pk = trigger_id_of(request.user, holder_id)
        with transaction.atomic():
            holder = Trigger.objects.filter(pk=pk, owner_id=request.user.pk, deleted_at__isnull=True).first()
            if holder is None:
                holder = services.trigger_register(
                    owner=request.user, id=pk, kind=TriggerKind.ONCE, delay_ms=24 * 3600 * 1000, paused=True,
                    name=f"{data['workflow_id']} v{data['version']} (run launcher)"[:200],
                    workflow_id=data["workflow_id"],
                    metadata={"run_launcher": {"version": data["version"], "user_id": data["user_id"]}},
                )  # fmt: skip
        key = data["idempotency_key"] or None
        existed = (
            bool(key)
            and visible_executions(request.user).filter(trigger=holder, idempotency_key=key).exists()
        )
        payload = {"scheduled_for": clock.iso_z(data["scheduled_for"]), "version": data["version"],
                   "user_id": data["user_id"]}  # fmt: skip
        execution = execution_services.execution_run_now(
            trigger=holder, input=payload, idempotency_key=key, requested_by=request.user
        )
        return Response(
            run_of(execution, None), status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        )
