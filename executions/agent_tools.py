"""Tools an AI agent can call to manage its schedules: one definition each (name, description, JSON Schema
of the arguments), served in the function-calling format at `/api/v1/agent-tools/`, run as the calling
user by `POST /api/v1/agent-tools/call`, and exposed over MCP by `manage.py mcp`.

Three surfaces, one registry: a tool's arguments go through the same serializer and services as the REST
API, so an agent gets the 400 a person would (the field named, nothing half-saved), never sees another
user's triggers (an id that is not theirs is "not found"), and every slot it schedules keeps the
exactly-once key. A tool answers JSON-ready data; a refusal is a `ToolError` carrying field messages.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from executions.api.serializers import ExecutionSerializer
from executions.api.views import visible_executions
from executions.models import Execution
from schedules import services
from schedules.api.serializers import TriggerSerializer
from schedules.models import OverlapPolicy, Trigger, TriggerKind, TriggerStatus, WindowAction
from toolkit.api import field_errors

MAX_LIST = 100


class ToolError(Exception):
    """A refusal an agent can act on: {field: [messages]} (`tool` for the call as a whole)."""

    def __init__(self, errors: dict[str, list[str]], *, not_found: bool = False) -> None:
        super().__init__(errors)
        self.errors = errors
        self.not_found = not_found


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[Any, dict[str, Any]], Any]

    def definition(self) -> dict[str, Any]:
        """The OpenAI-style function-calling entry (also what Anthropic's and most agent SDKs accept)."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


TRIGGER_ID = {"type": "string", "format": "uuid", "description": "The schedule's id (from schedule_list)."}
LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 20}


def _trigger(user: Any, args: dict[str, Any]) -> Trigger:
    raw = args.get("id")
    try:
        pk = uuid.UUID(str(raw))
    except ValueError:
        raise ToolError({"id": ["no schedule of yours has this id"]}, not_found=True) from None
    found = Trigger.objects.visible_to(user).filter(pk=pk).first()
    if found is None:
        raise ToolError({"id": ["no schedule of yours has this id"]}, not_found=True)
    return found


def _limit(args: dict[str, Any]) -> int:
    value = args.get("limit", 20)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIST:
        raise ToolError({"limit": [f"must be a whole number from 1 to {MAX_LIST}"]})
    return value


def _summary(trigger: Trigger) -> dict[str, Any]:
    data = TriggerSerializer(trigger).data
    keys = (
        "id", "name", "workflow_id", "kind", "cron_expression", "interval_seconds", "run_at", "timezone",
        "status", "schedule_description", "next_run_at", "last_status", "last_run_at", "run_count",
    )  # fmt: skip
    return {key: data[key] for key in keys}


def _create(user: Any, args: dict[str, Any]) -> Any:
    body = TriggerSerializer(data=args)
    if not body.is_valid():
        raise ToolError(field_errors(body.errors))
    try:
        trigger = services.trigger_register(owner=user, **body.validated_data)
    except DjangoValidationError as exc:
        raise ToolError(
            field_errors(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
        ) from None
    return _summary(trigger)


def _pause(user: Any, args: dict[str, Any]) -> Any:
    reason = args.get("reason", "paused by an agent")
    if not isinstance(reason, str) or len(reason) > 500:
        raise ToolError({"reason": ["must be text of at most 500 characters"]})
    return _summary(services.trigger_pause(trigger=_trigger(user, args), reason=reason))


def _resume(user: Any, args: dict[str, Any]) -> Any:
    return _summary(services.trigger_resume(trigger=_trigger(user, args)))


def _stop(user: Any, args: dict[str, Any]) -> Any:
    trigger = _trigger(user, args)
    services.trigger_delete(trigger=trigger)
    return {"id": str(trigger.pk), "stopped": True, "history_kept": True}


def _list(user: Any, args: dict[str, Any]) -> Any:
    rows = Trigger.objects.visible_to(user).select_related("owner").order_by("-created_at", "-id")
    status = args.get("status")
    if status is not None:
        if status not in TriggerStatus.values:
            raise ToolError({"status": [f"must be one of {', '.join(TriggerStatus.values)}"]})
        rows = rows.filter(status=status)
    return {"schedules": [_summary(t) for t in rows[: _limit(args)]]}


def _runs(user: Any, args: dict[str, Any]) -> Any:
    trigger = _trigger(user, args)
    rows: Any = visible_executions(user).filter(trigger=trigger).order_by("-created_at", "-id")
    page: list[Execution] = list(rows[: _limit(args)])
    return {"schedule": str(trigger.pk), "runs": ExecutionSerializer(page, many=True).data}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "schedule_create",
            "Schedule a workflow: on a cron expression (5 fields, or 6 with seconds first) read in an IANA "
            "time zone, every N seconds, or once (at run_at, or delay_ms from now). Each scheduled time runs "
            "exactly once. Returns the schedule with its next run.",
            _object(
                {
                    "name": {"type": "string", "maxLength": 200, "description": "A name to recognise."},
                    "workflow_id": {
                        "type": "string",
                        "maxLength": 200,
                        "description": "The workflow to start.",
                    },
                    "kind": {"type": "string", "enum": list(TriggerKind.values), "default": "cron"},
                    "cron_expression": {"type": "string", "description": "e.g. '0 9 * * 1-5'"},
                    "timezone": {
                        "type": "string",
                        "description": "IANA zone, e.g. 'Europe/Paris'; default UTC",
                    },
                    "interval_seconds": {"type": "integer", "minimum": 1},
                    "run_at": {
                        "type": "string",
                        "format": "date-time",
                        "description": "ISO 8601 with offset",
                    },
                    "delay_ms": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Once: run this long from now.",
                    },
                    "input": {"type": "object", "description": "JSON object given to each run."},
                    "target": {"type": "string", "description": "Launch target the operator configured."},
                    "overlap_policy": {"type": "string", "enum": list(OverlapPolicy.values)},
                    "max_runs": {"type": "integer", "minimum": 1},
                    "windows": {
                        "type": "array",
                        "description": "When runs may start, in its zone, e.g. "
                        "[{'days': 'mon-fri', 'start': '09:00', 'end': '17:00'}]; default any time.",
                        "items": {"type": "object"},
                    },
                    "window_action": {
                        "type": "string",
                        "enum": list(WindowAction.values),
                        "description": "Outside the windows: skip the time, or defer it to the next opening.",
                    },
                    "excluded_calendar": {
                        "type": "integer",
                        "description": "Id of a holiday calendar whose dates never run (/api/v1/calendars/).",
                    },
                    "paused": {"type": "boolean", "description": "Create it paused."},
                },
                ("name", "workflow_id"),
            ),
            _create,
        ),
        Tool(
            "schedule_pause",
            "Pause a schedule: nothing runs until it is resumed.",
            _object({"id": TRIGGER_ID, "reason": {"type": "string", "maxLength": 500}}, ("id",)),
            _pause,
        ),
        Tool(
            "schedule_resume",
            "Resume a paused schedule from now on (times that fell while paused are not replayed).",
            _object({"id": TRIGGER_ID}, ("id",)),
            _resume,
        ),
        Tool(
            "schedule_stop",
            "Stop a schedule for good (delete it); its run history stays readable.",
            _object({"id": TRIGGER_ID}, ("id",)),
            _stop,
        ),
        Tool(
            "schedule_list",
            "List your schedules, newest first, with their next run and last status.",
            _object({"status": {"type": "string", "enum": list(TriggerStatus.values)}, "limit": LIMIT}),
            _list,
        ),
        Tool(
            "schedule_runs",
            "A schedule's runs, newest first: status, times, result or error.",
            _object({"id": TRIGGER_ID, "limit": LIMIT}, ("id",)),
            _runs,
        ),
    )
}


def call(user: Any, name: Any, arguments: Any) -> Any:
    """Run tool `name` as `user`; a ToolError names what to fix."""
    tool = TOOLS.get(name) if isinstance(name, str) else None
    if tool is None:
        raise ToolError({"name": [f"unknown tool; one of {', '.join(TOOLS)}"]})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise ToolError({"arguments": ["must be a JSON object"]})
    known = set(tool.parameters["properties"])
    unknown = sorted(str(key) for key in arguments if key not in known)
    if unknown:
        raise ToolError({unknown[0]: [f"is not an argument of {tool.name}"]})
    missing = [key for key in tool.parameters["required"] if key not in arguments]
    if missing:
        raise ToolError({missing[0]: ["is required"]})
    try:
        return tool.run(user, arguments)
    except serializers.ValidationError as exc:
        raise ToolError(field_errors(exc.detail)) from None
