"""Adapter for the agent task queue this service replaces (`/api/agent/execute`,
`/api/cron/check-scheduled-tasks`), as that system's documentation describes them.

A task is a trigger (workflow = the agent type, input = {goal, agentType}): with `schedule.enabled` it is
a cron trigger read in `schedule.timezone` (that system's default zone, `AGENT_ADAPTER_TIMEZONE`, when none
is given); without, it is a paused one-off holding a single manual run started at once, whose idempotency
key is the task, so a retried request cannot start it twice. `async: false` waits for that run to end, up to
the run's timeout and at most `AGENT_SYNC_WAIT_SECONDS` (kept under the web server's request timeout); a run
still going then is answered 202 with its status, to be read again later. Priorities are that system's words
(urgent/high/medium/low), which are also ours; task statuses are its words (pending, running, completed,
failed, cancelled, skipped). That system tracked credits and tokens per task: a task that ended answers
`creditsUsed` and `usage` (what its run reported), and one skipped because its owner's credit budget is
used up answers `success: false` with "insufficient credits", as that system failed such tasks.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import services as execution_services
from executions.models import Execution, ExecutionStatus, SkipReason
from schedules import services, tick
from schedules.models import Priority, Trigger, TriggerKind
from toolkit import clock
from toolkit.api import estimated_count

#: Our run states in that system's task words.
TASK_STATUS: dict[str, str] = {
    "pending": "pending", "queued": "pending", "waiting": "pending", "running": "running",
    "succeeded": "completed", "failed": "failed", "timed_out": "failed", "cancelled": "cancelled",
    "skipped": "skipped",
}  # fmt: skip


class ScheduleSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(default=False)
    cron = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    timezone = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)


class ExecuteSerializer(serializers.Serializer):
    goal = serializers.CharField(max_length=2000, help_text="What the agent is to do.")
    agentType = serializers.CharField(max_length=200, default="general_agent", help_text="The agent to run.")
    # `async` is a keyword: declared below under its wire name.
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.MEDIUM)
    schedule = ScheduleSerializer(required=False)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        fields["async"] = serializers.BooleanField(default=True, help_text="Answer at once (true) or wait.")
        return fields


class AgentExecuteView(APIView):
    error_field_names = {
        "cron_expression": "schedule.cron", "timezone": "schedule.timezone", "name": "goal",
        "workflow_id": "agentType",
    }  # fmt: skip

    @extend_schema(
        summary="Run or schedule an agent task (agent task queue adapter)",
        request=ExecuteSerializer,
        responses={200: dict, 201: dict, 202: dict},
        tags=["adapters"],
        examples=[
            OpenApiExample(
                "Scheduled",
                value={
                    "goal": "Check competitor pricing and send report",
                    "agentType": "research_agent",
                    "async": True,
                    "schedule": {"enabled": True, "cron": "0 9 * * *", "timezone": "America/New_York"},
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        body = ExecuteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        schedule = data.get("schedule") or {}
        fields: dict[str, Any] = {
            "name": data["goal"][:200],
            "description": data["goal"],
            "workflow_id": data["agentType"],
            "priority": data["priority"],
            "input": {"goal": data["goal"], "agentType": data["agentType"]},
        }
        if schedule.get("enabled"):
            zone = schedule.get("timezone") or settings.AGENT_ADAPTER_TIMEZONE
            trigger = services.trigger_register(
                owner=request.user, kind=TriggerKind.CRON, cron_expression=schedule.get("cron", ""),
                timezone=zone, **fields,
            )  # fmt: skip
            return Response(
                {
                    "success": True,
                    "taskId": str(trigger.pk),
                    "status": "scheduled",
                    "schedule": {
                        "enabled": True,
                        "cron": trigger.cron_expression,
                        "timezone": trigger.timezone,
                    },
                    "nextRunAt": clock.iso_z(trigger.next_run_at),
                },
                status=status.HTTP_201_CREATED,
            )
        # One run now: a paused one-off holds it, so the beat never adds a scheduled one beside it.
        trigger = services.trigger_register(
            owner=request.user, kind=TriggerKind.ONCE, delay_ms=24 * 3600 * 1000, paused=True, **fields
        )
        execution = execution_services.execution_run_now(
            trigger=trigger, idempotency_key=f"agent-execute:{trigger.pk}", requested_by=request.user
        )
        if not data["async"]:
            execution = _wait(execution, min(trigger.timeout_seconds, settings.AGENT_SYNC_WAIT_SECONDS))
        word = TASK_STATUS.get(str(execution.status), str(execution.status))
        finished = word not in ("pending", "running")
        answer = {
            "success": execution.status not in (ExecutionStatus.FAILED, ExecutionStatus.TIMED_OUT),
            "taskId": str(trigger.pk),
            "executionId": str(execution.pk),
            "status": word,
        }
        if finished:
            answer.update(result=execution.result, error=execution.error or None, **usage_words(execution))
            if execution.skip_reason == SkipReason.CREDITS_EXHAUSTED:
                # That system failed such a task with "insufficient credits"; the run did not happen.
                answer.update(success=False, error=INSUFFICIENT_CREDITS)
        return Response(answer, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED)


INSUFFICIENT_CREDITS = "insufficient credits: the credit budget is used up"


def usage_words(execution: Execution) -> dict[str, Any]:
    """A task's usage in that system's words: `creditsUsed` (its users' counter, per task here) and the
    figures the target reported (`usage`: credits, inputTokens, outputTokens, cost), null when none."""
    usage = execution.usage
    return {
        "creditsUsed": None if usage is None or usage.credits is None else float(usage.credits),
        "usage": None if usage is None else usage.as_camel(),
    }


def _wait(execution: Execution, seconds: float) -> Execution:
    """Poll the run until it ends or `seconds` pass; the database, not the broker, says when it ended."""
    deadline = time.monotonic() + seconds
    while not execution.is_finished and time.monotonic() < deadline:
        time.sleep(0.2)
        execution.refresh_from_db()
    return execution


@csrf_exempt
def check_scheduled_tasks(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    """That system's cron endpoint, behind `Authorization: Bearer $CRON_SECRET` (404 while no secret is
    set, as for `/api/v1/tick`): GET reports, POST also runs one beat pass (the due tasks are queued, each
    slot once, safe beside a running beat) and says how many it queued."""
    refused = tick.refuse_without_secret(
        request, methods=("GET", "POST"), realm="cron", message={"error": "Unauthorized"}
    )
    if refused is not None:
        return refused
    queued = None
    if request.method == "POST":
        from schedules.beat.scheduler import run_tick

        queued = int(run_tick()["count"])
    now = clock.now()
    scheduled = Trigger.objects.active().filter(kind=TriggerKind.CRON)
    answer: dict[str, Any] = {
        "status": "healthy",
        "scheduledTasks": estimated_count(scheduled)[0],
        "tasksCurrentlyDue": estimated_count(scheduled.filter(next_run_at__lte=now))[0],
        "timestamp": clock.iso_z(now),
    }
    if queued is not None:
        answer["queued"] = queued
    return JsonResponse(answer)
