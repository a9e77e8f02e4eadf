"""The earlier scheduler's endpoints (`/api/scheduler/…`), kept so frontends written against it keep working:
camelCase bodies, `{"success": …}` envelopes, the same authentication as `/api/v1/`.

They are adapters, not a second implementation: they translate names and call the same services, and their
errors come from the same exception handler (`error_style = "compat"` only changes the envelope to
`{"success": false, "error": "cronExpression: …"}`). What is that system's own is kept as it defined it: a
JSON body read whatever its content type (its browser snippet posts `text/plain`), history in its three
words (`HistoryStatus`) with its statistics (`history_stats`), and a `triggerId` that can be registered
again after an unregister (`services.trigger_restore`).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Q, QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions.api.views import visible_executions
from executions.models import FINISHED_STATUSES, Execution, ExecutionStatus
from schedules import services
from schedules.api.serializers import DomainText
from schedules.models import Trigger, TriggerKind, TriggerStatus
from toolkit.api import AnyContentJSONParser, GuardedJSONParser, InstantField
from toolkit.enums import Choices

if TYPE_CHECKING:
    from django.contrib.auth.models import User

HISTORY_LIMIT_MAX = 1000


class HistoryStatus(Choices):
    """The earlier scheduler's run states (`workflow_schedule_executions.status`): its clients test
    `status === 'success'`, so history answers in these words, never in ours."""

    SUCCESS = "success", "The run succeeded"
    FAILED = "failed", "The run failed, timed out or was cancelled"
    SKIPPED = "skipped", "Due, but a policy decided not to run it"


#: Which of our finished states each of its words covers. That system wrote a row only once a run had
#: ended, so unfinished runs (pending, waiting, queued, running) are not in its history yet; a run we
#: cancelled did not do its work, which that system could only call a failure.
HISTORY_STATUSES: dict[HistoryStatus, frozenset[str]] = {
    HistoryStatus.SUCCESS: frozenset({ExecutionStatus.SUCCEEDED}),
    HistoryStatus.FAILED: frozenset(
        {ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT, ExecutionStatus.CANCELLED}
    ),
    HistoryStatus.SKIPPED: frozenset({ExecutionStatus.SKIPPED}),
}
_HISTORY_STATUS_OF = {ours: word for word, statuses in HISTORY_STATUSES.items() for ours in statuses}


def history_stats(rows: QuerySet[Execution]) -> dict[str, Any]:
    """Statistics as that system defined them (one aggregate query): `total` counts every finished run,
    skipped ones included, and `successRate` is `successful / total` in percent, one decimal (95 successes
    of 100 runs, 2 of them skipped, is 95.0) — None when there is no run yet; `avgDurationMs` averages the
    runs that have a duration."""
    figures = rows.aggregate(
        total=Count("pk"),
        **{
            key: Count("pk", filter=Q(status__in=HISTORY_STATUSES[word]))
            for key, word in (
                ("successful", HistoryStatus.SUCCESS),
                ("failed", HistoryStatus.FAILED),
                ("skipped", HistoryStatus.SKIPPED),
            )
        },
        avg=Avg("duration_ms"),
    )
    total = figures["total"]
    return {
        "total": total,
        "successful": figures["successful"],
        "failed": figures["failed"],
        "skipped": figures["skipped"],
        "successRate": round(100 * figures["successful"] / total, 1) if total else None,
        "avgDurationMs": None if figures["avg"] is None else round(figures["avg"]),
    }


# --- Bodies -----------------------------------------------------------------------------------------------


class RegisterSerializer(serializers.Serializer):
    triggerId = serializers.UUIDField(
        help_text="Client-chosen id; registering it again updates the schedule."
    )
    workflowId = DomainText(max_length=200, help_text="The workflow to start; also the trigger's name.")
    cronExpression = DomainText(max_length=200, help_text="5 fields, or 6 with seconds first.")
    timezone = DomainText(required=False, default="UTC", max_length=64, help_text="IANA zone (default UTC).")
    enabled = serializers.BooleanField(required=False, default=True, help_text="false registers it paused.")


class TriggerIdSerializer(serializers.Serializer):
    triggerId = serializers.UUIDField()


class PauseActionSerializer(TriggerIdSerializer):
    action = serializers.ChoiceField(choices=["pause", "resume"])


class HistoryQuerySerializer(TriggerIdSerializer):
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=HISTORY_LIMIT_MAX)


class ResultSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    message = serializers.CharField()


class CompatExecutionSerializer(serializers.Serializer):
    executionId = serializers.UUIDField(source="id")
    triggerId = serializers.UUIDField(source="trigger_id")
    workflowId = serializers.CharField(source="trigger.workflow_id")
    scheduledAt = serializers.SerializerMethodField(
        help_text="The slot; for a manual run, when it was asked for."
    )
    executedAt = InstantField(source="started_at", allow_null=True)
    status = serializers.SerializerMethodField(help_text="success, failed or skipped.")
    error = serializers.SerializerMethodField()
    runId = serializers.SerializerMethodField()
    durationMs = serializers.IntegerField(source="duration_ms", allow_null=True)
    metadata = serializers.SerializerMethodField()

    def get_scheduledAt(self, execution: Execution) -> str | None:
        return InstantField().to_representation(
            execution.slot or execution.requested_at or execution.created_at
        )

    def get_status(self, execution: Execution) -> HistoryStatus:
        return _HISTORY_STATUS_OF[execution.status]

    def get_error(self, execution: Execution) -> str | None:
        if execution.status == ExecutionStatus.CANCELLED:
            return execution.error or "cancelled"
        return execution.error or None

    def get_runId(self, execution: Execution) -> str | None:
        return execution.run_id or None

    def get_metadata(self, execution: Execution) -> dict[str, Any]:
        usage = execution.usage
        return {
            "state": execution.status,  # ours, finer than that system's three words
            "origin": execution.origin,
            "attempts": execution.attempts,
            "skipReason": execution.skip_reason or None,
            "rerunOf": str(execution.rerun_of_id) if execution.rerun_of_id else None,
            # What the run reported using (that system had none; its `metadata` is free-form).
            "usage": None if usage is None else usage.as_camel(),
        }


class CompatStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    successful = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    successRate = serializers.FloatField(allow_null=True)
    avgDurationMs = serializers.IntegerField(allow_null=True)


class HistorySerializer(serializers.Serializer):
    executions = CompatExecutionSerializer(many=True)
    stats = CompatStatsSerializer()


# --- Views ------------------------------------------------------------------------------------------------


def _not_found() -> NotFound:
    return NotFound("triggerId: no schedule with this id")


def _own_trigger(user, trigger_id: uuid.UUID) -> Trigger:
    """A live trigger the user may change; anyone else's is a 404, exactly like one that does not exist."""
    trigger = Trigger.objects.visible_to(user).filter(pk=trigger_id).first()
    if trigger is None:
        raise _not_found()
    return trigger


def _owned_with_deleted(user) -> QuerySet[Trigger]:
    """The user's triggers, unregistered ones included (their history outlives them); staff see all."""
    user = cast("User", user)  # IsAuthenticated (the default permission) rules out AnonymousUser
    return Trigger.objects.all() if user.is_staff else Trigger.objects.filter(owner=user)


def _ok(message: str) -> Response:
    return Response({"success": True, "message": message})


class CompatView(APIView):
    # The earlier scheduler's browser snippet posts a JSON string with no headers (text/plain).
    parser_classes = [GuardedJSONParser, AnyContentJSONParser]
    error_style = "compat"
    error_field_names = {
        "name": "workflowId",  # the name defaults to the workflowId, so that is what a too-long name was
        "workflow_id": "workflowId",
        "cron_expression": "cronExpression",
        "trigger_id": "triggerId",
    }

    def parse(self, serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
        body = serializer_class(data=data)
        body.is_valid(raise_exception=True)
        return body.validated_data


def _compat_schema(
    operation_id: str, summary: str, request: Any, example: dict[str, Any], message: str
) -> Any:
    return extend_schema(
        operation_id=operation_id,
        summary=summary,
        # Any content type is read as JSON; text/plain is what `fetch` sends for a string body.
        request={"application/json": request, "text/plain": request},
        responses={200: ResultSerializer},
        tags=["compat"],
        examples=[
            OpenApiExample("Request", value=example, request_only=True),
            OpenApiExample("Done", value={"success": True, "message": message}, response_only=True),
            OpenApiExample(
                "Error",
                value={"success": False, "error": "cronExpression: field 2 (hour): 25 is out of range 0-23"},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )


EXAMPLE_ID = "3f2b8c1e-6a0d-4a8e-9d67-0c4f5b2e7a91"


class RegisterView(CompatView):
    @_compat_schema(
        "compat_register",
        "Register or update a schedule",
        RegisterSerializer,
        {
            "triggerId": EXAMPLE_ID,
            "workflowId": "wf-report",
            "cronExpression": "0 9 * * 1-5",
            "timezone": "America/Los_Angeles",
            "enabled": True,
        },
        "Schedule registered successfully",
    )
    def post(self, request: Request) -> Response:
        data = self.parse(RegisterSerializer, request.data)
        fields = {
            "kind": TriggerKind.CRON,
            "workflow_id": data["workflowId"],
            "cron_expression": data["cronExpression"],
            "timezone": data["timezone"],
        }
        with transaction.atomic():
            if not Trigger.objects.filter(pk=data["triggerId"]).exists():
                try:
                    services.trigger_register(
                        owner=request.user,
                        id=data["triggerId"],
                        paused=not data["enabled"],
                        name=data["workflowId"],
                        **fields,
                    )
                except IntegrityError:
                    pass  # registered concurrently by a twin request: update it below, if it is ours
                else:
                    return _ok("Schedule registered successfully")
            self._update(request.user, data["triggerId"], data["enabled"], fields)
        return _ok("Schedule registered successfully")

    @staticmethod
    def _update(user, trigger_id: uuid.UUID, enabled: bool, fields: dict[str, Any]) -> None:
        """Registering an existing id updates it, all or nothing (one transaction around the services).
        An id that was unregistered is registered again: the row (kept for its history) comes back, so
        the history of both lives reads as one, as it did in that system."""
        unregistered = _owned_with_deleted(user).filter(pk=trigger_id, deleted_at__isnull=False).first()
        if unregistered is not None:
            services.trigger_restore(
                trigger=unregistered, paused=not enabled, name=fields["workflow_id"], **fields
            )
            return
        trigger = _own_trigger(user, trigger_id)
        trigger = services.trigger_update(trigger=trigger, **fields)
        if enabled and trigger.status == TriggerStatus.PAUSED:
            services.trigger_resume(trigger=trigger)
        elif not enabled and trigger.status == TriggerStatus.ACTIVE:
            services.trigger_pause(trigger=trigger)


class UnregisterView(CompatView):
    @_compat_schema(
        "compat_unregister",
        "Unregister a schedule",
        TriggerIdSerializer,
        {"triggerId": EXAMPLE_ID},
        "Schedule unregistered successfully",
    )
    def post(self, request: Request) -> Response:
        data = self.parse(TriggerIdSerializer, request.data)
        services.trigger_delete(trigger=_own_trigger(request.user, data["triggerId"]))
        return _ok("Schedule unregistered successfully")


class PauseView(CompatView):
    @_compat_schema(
        "compat_pause",
        "Pause or resume a schedule",
        PauseActionSerializer,
        {"triggerId": EXAMPLE_ID, "action": "pause"},
        "Schedule paused successfully",
    )
    def post(self, request: Request) -> Response:
        data = self.parse(PauseActionSerializer, request.data)
        trigger = _own_trigger(request.user, data["triggerId"])
        if data["action"] == "pause":
            services.trigger_pause(trigger=trigger)
            return _ok("Schedule paused successfully")
        services.trigger_resume(trigger=trigger)
        return _ok("Schedule resumed successfully")


class HistoryView(CompatView):
    @extend_schema(
        operation_id="compat_history",
        summary="Execution history and statistics of a schedule",
        parameters=[HistoryQuerySerializer],
        responses={200: HistorySerializer},
        tags=["compat"],
        examples=[
            OpenApiExample(
                "History",
                value={
                    "executions": [
                        {
                            "executionId": "a1c6f0de-2f4e-4a8b-8b1e-5d2f0c9e7b13",
                            "triggerId": EXAMPLE_ID,
                            "workflowId": "wf-report",
                            "scheduledAt": "2026-03-02T17:00:00Z",
                            "executedAt": "2026-03-02T17:00:00.120000Z",
                            "status": "success",
                            "error": None,
                            "runId": "run-42",
                            "durationMs": 5120,
                            "metadata": {
                                "state": "succeeded",
                                "origin": "schedule",
                                "attempts": 1,
                                "skipReason": None,
                                "rerunOf": None,
                                "usage": {
                                    "credits": 2.0,
                                    "inputTokens": 1200,
                                    "outputTokens": 300,
                                    "cost": 0.0081,
                                },
                            },
                        }
                    ],
                    "stats": {
                        "total": 1,
                        "successful": 1,
                        "failed": 0,
                        "skipped": 0,
                        "successRate": 100.0,
                        "avgDurationMs": 5120,
                    },
                },
                response_only=True,
            )
        ],
    )
    def get(self, request: Request) -> Response:
        query = self.parse(HistoryQuerySerializer, request.query_params)
        # History outlives an unregister (deleted triggers keep their runs), so deleted ones are found too.
        trigger = _owned_with_deleted(request.user).filter(pk=query["triggerId"]).first()
        if trigger is None:
            raise _not_found()
        finished = visible_executions(request.user).filter(trigger=trigger, status__in=FINISHED_STATUSES)
        rows = finished[: query["limit"]]
        figures = history_stats(finished.order_by())
        return Response(HistorySerializer({"executions": rows, "stats": figures}).data)
