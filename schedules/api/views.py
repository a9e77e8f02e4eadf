"""Trigger API views. Thin by design: they scope querysets to the user, parse input with the serializers
and call the services (`schedules.services`, `executions.services`); the project exception handler turns the
services' `ValidationError` into a 400 naming the field.

Isolation: every lookup goes through `Trigger.objects.visible_to(user)`, so another user's trigger is a
404 — indistinguishable from one that does not exist — on every route and action.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any, cast

from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import services as execution_services
from executions.api.serializers import (
    BackfillReportSerializer,
    BackfillSerializer,
    ExecutionSerializer,
    RunNowSerializer,
    StatsSerializer,
)
from executions.api.views import ExecutionFilter, scoped_object, visible_executions
from executions.models import Execution
from executions.stats import trigger_stats
from schedules import selectors, services, timing, validation
from schedules.api.serializers import (
    CronPreviewSerializer,
    PauseSerializer,
    PresetSerializer,
    PreviewQuerySerializer,
    SchedulePreviewSerializer,
    TemplateFromTriggerSerializer,
    TriggerSerializer,
    spec_of,
)
from schedules.models import Trigger, TriggerKind, TriggerStatus
from toolkit.api import AuthRateThrottle, GuardedFormParser, GuardedJSONParser, InstantField

if TYPE_CHECKING:
    from django.db.models import Field
    from rest_framework.serializers import BaseSerializer

# --- Examples shown in the docs ---------------------------------------------------------------------------

TRIGGER_EXAMPLES = [
    OpenApiExample(
        "Weekdays at 09:00 in Los Angeles",
        value={
            "name": "Morning report",
            "workflow_id": "wf-report",
            "cron_expression": "0 9 * * 1-5",
            "timezone": "America/Los_Angeles",
            "input": {"region": "us-west"},
        },
        request_only=True,
    ),
    OpenApiExample(
        "Every 15 minutes",
        value={"name": "Sync", "workflow_id": "wf-sync", "kind": "interval", "interval_seconds": 900},
        request_only=True,
    ),
    OpenApiExample(
        "Once, in 90 seconds",
        value={"name": "One-off", "workflow_id": "wf-once", "kind": "once", "delay_ms": 90000},
        request_only=True,
    ),
    OpenApiExample(
        "Created",
        value={
            "id": "3f2b8c1e-6a0d-4a8e-9d67-0c4f5b2e7a91",
            "name": "Morning report",
            "workflow_id": "wf-report",
            "kind": "cron",
            "cron_expression": "0 9 * * 1-5",
            "timezone": "America/Los_Angeles",
            "owner": "alice",
            "status": "active",
            "schedule_description": "At 09:00, Monday through Friday (America/Los_Angeles)",
            "next_run_at": "2026-03-02T17:00:00Z",
            "run_count": 0,
            "consecutive_failures": 0,
        },
        response_only=True,
        status_codes=["201", "200"],
    ),
    OpenApiExample(
        "Invalid cron expression",
        value={"cron_expression": ["field 2 (hour): 25 is out of range 0-23"]},
        response_only=True,
        status_codes=["400"],
    ),
]

IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Repeat a request with the same key to get the same execution back (200 instead of 201).",
)
IDEMPOTENCY_KEY_MAX = 200


# --- Filters ----------------------------------------------------------------------------------------------


class TriggerFilter(filters.FilterSet):
    """Unknown values of a choice (`?status=sleeping`) or ordering are a 400 naming the parameter."""

    status = filters.ChoiceFilter(choices=TriggerStatus.choices)
    kind = filters.ChoiceFilter(choices=TriggerKind.choices)
    workflow_id = filters.CharFilter()
    target = filters.CharFilter()
    search = filters.CharFilter(field_name="name", lookup_expr="icontains", help_text="Part of the name.")
    ordering = filters.OrderingFilter(
        fields=("name", "created_at", "updated_at", "next_run_at", "last_run_at", "status", "run_count"),
        help_text="Comma-separated fields, `-` for descending (default: newest first).",
    )

    class Meta:
        model = Trigger
        fields: list[str] = []


# --- Triggers ---------------------------------------------------------------------------------------------


def _put_defaults() -> dict[str, Any]:
    """What PUT resets an omitted writable field to: the model's default (operator defaults included), so PUT
    replaces the trigger's settings while PATCH changes only what it names."""
    # WRITABLE_FIELDS are concrete fields, never reverse relations (which have no default).
    return {
        name: cast("Field[Any, Any]", Trigger._meta.get_field(name)).get_default()
        for name in validation.WRITABLE_FIELDS
    }


@extend_schema_view(
    list=extend_schema(summary="List your triggers", tags=["triggers"]),
    create=extend_schema(summary="Create a trigger", tags=["triggers"], examples=TRIGGER_EXAMPLES),
    retrieve=extend_schema(summary="Get a trigger", tags=["triggers"]),
    update=extend_schema(
        summary="Replace a trigger's settings",
        description="Writable fields left out are reset to their defaults. Read-only fields are ignored.",
        tags=["triggers"],
        examples=TRIGGER_EXAMPLES,
    ),
    partial_update=extend_schema(
        summary="Change some of a trigger's settings",
        description="Read-only fields (owner, status, counters, next run) are ignored.",
        tags=["triggers"],
    ),
    destroy=extend_schema(
        summary="Delete a trigger",
        description="It leaves lists and beat; its execution history stays readable under /executions/.",
        tags=["triggers"],
    ),
)
class TriggerViewSet(viewsets.ModelViewSet):
    queryset = Trigger.objects.none()  # tells the schema the model; get_queryset() scopes to the user
    lookup_value_regex = "[^/]+"  # any id reaches the view, so even "0.5" gets a JSON 404
    serializer_class = TriggerSerializer
    filterset_class = TriggerFilter
    error_field_names = {"after": "start"}

    def get_queryset(self):
        return Trigger.objects.visible_to(self.request.user).select_related("owner")

    def get_object(self) -> Trigger:
        return scoped_object(self)

    def perform_create(self, serializer: BaseSerializer[Trigger]) -> None:
        serializer.instance = services.trigger_register(owner=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer: BaseSerializer[Trigger]) -> None:
        fields = dict(serializer.validated_data)
        if "paused" in fields:
            raise serializers.ValidationError(
                {"paused": ["use the pause and resume actions to change a trigger's status"]}
            )
        if not serializer.partial:
            fields = {**_put_defaults(), **fields}
        # UpdateModelMixin.update built the serializer around get_object(), so the instance is set.
        trigger = cast(Trigger, serializer.instance)
        serializer.instance = services.trigger_update(trigger=trigger, **fields)

    def perform_destroy(self, instance: Trigger) -> None:
        services.trigger_delete(trigger=instance)

    @extend_schema(
        summary="Pause a trigger",
        description="No slot runs until it is resumed. Pausing a paused trigger changes nothing.",
        request=PauseSerializer,
        responses=TriggerSerializer,
        tags=["triggers"],
        examples=[OpenApiExample("With a reason", value={"reason": "maintenance window"}, request_only=True)],
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        body = PauseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        trigger = services.trigger_pause(trigger=self.get_object(), reason=body.validated_data["reason"])
        return Response(TriggerSerializer(trigger).data)

    @extend_schema(
        summary="Resume a trigger",
        description="Runs from now on; slots that fell while it was paused are never replayed.",
        request=None,
        responses=TriggerSerializer,
        tags=["triggers"],
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        trigger = services.trigger_resume(trigger=self.get_object())
        return Response(TriggerSerializer(trigger).data)

    @extend_schema(
        summary="Run a trigger now",
        description="Starts a manual run outside the schedule. With an `Idempotency-Key` header, repeating "
        "the request returns the same execution (200) instead of starting another (201).",
        request=RunNowSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={201: ExecutionSerializer, 200: ExecutionSerializer},
        tags=["triggers"],
        examples=[OpenApiExample("Override the input", value={"input": {"date": "2026-03-01"}})],
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        body = RunNowSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = _idempotency_key(request)
        # Whether this key already named a run decides 200 vs 201. A concurrent twin may make both answers
        # 201, but never two runs: the (trigger, idempotency_key) unique constraint holds that line.
        existed = (
            bool(key)
            and visible_executions(request.user).filter(trigger=trigger, idempotency_key=key).exists()
        )
        execution = execution_services.execution_run_now(
            trigger=trigger,
            input=body.validated_data["input"],
            idempotency_key=key,
            requested_by=request.user,
        )
        return Response(
            ExecutionSerializer(execution).data,
            status=status.HTTP_200_OK if existed else status.HTTP_201_CREATED,
        )

    @extend_schema(
        summary="Backfill a past range of a trigger's slots",
        description="Runs the trigger's slots in [start, end] that have no execution yet, as scheduled runs "
        "(origin `backfill`): a slot already recorded is left alone, so repeating a backfill runs nothing "
        "twice; the overlap policy applies as to any slot. `dry_run` lists the slots and which already have "
        "a run. `spread_seconds` spaces the launches out. At most `SCHEDULER_MAX_BACKFILL_SLOTS` slots.",
        request=BackfillSerializer,
        responses=BackfillReportSerializer,
        tags=["triggers"],
        examples=[
            OpenApiExample(
                "A day, spread over an hour",
                value={
                    "start": "2026-03-01T00:00:00Z",
                    "end": "2026-03-01T23:59:59Z",
                    "spread_seconds": 3600,
                },
                request_only=True,
            ),
            OpenApiExample(
                "Range too large",
                value={"end": ["the range holds more than 1000 slots; backfill at most 1000 at a time"]},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    @action(detail=True, methods=["post"], filterset_class=None, pagination_class=None)
    def backfill(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        body = BackfillSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = execution_services.execution_backfill(
            trigger=trigger, launched_by=request.user.get_username()[:100], **body.validated_data
        )
        return Response(report.as_json())

    @extend_schema(
        summary="Preview a trigger's next fire times",
        description=(
            "In UTC and in the trigger's zone, with daylight-saving notes; each says whether the trigger's "
            "windows, blackouts and calendar run, defer or skip it, and `excluded_days` lists the calendar's "
            "dates in the range."
        ),
        parameters=[PreviewQuerySerializer],
        responses=SchedulePreviewSerializer,
        tags=["triggers"],
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def preview(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        preview = services.trigger_preview_full(
            trigger=trigger, after=query.validated_data.get("start"), count=query.validated_data["count"]
        )
        return Response(_preview(spec_of(trigger), preview.runs, preview.excluded_days))

    @extend_schema(
        summary="Save a trigger's settings as a template",
        request=TemplateFromTriggerSerializer,
        responses={201: OpenApiTypes.OBJECT},
        tags=["templates"],
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="save-as-template",
        filterset_class=None,
        pagination_class=None,
    )
    def save_as_template(self, request: Request, pk: str | None = None) -> Response:
        from schedules.api.library import TemplateSerializer

        trigger = self.get_object()
        body = TemplateFromTriggerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        template = services.template_save(owner=request.user, trigger=trigger, **body.validated_data)
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="List a trigger's executions",
        responses=ExecutionSerializer(many=True),
        tags=["triggers"],
    )
    @action(
        detail=True,
        methods=["get"],
        queryset=Execution.objects.none(),
        filterset_class=ExecutionFilter,
        serializer_class=ExecutionSerializer,
    )
    def executions(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        rows = self.filter_queryset(visible_executions(request.user).filter(trigger=trigger))
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(ExecutionSerializer(page, many=True).data)

    @extend_schema(
        summary="A trigger's run statistics",
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME, description="Count only runs recorded since.")
        ],
        responses=StatsSerializer,
        tags=["triggers"],
    )
    @action(detail=True, methods=["get"], filterset_class=None, pagination_class=None)
    def stats(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        query = _SinceSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        figures = trigger_stats(trigger=trigger, since=query.validated_data.get("since"))
        return Response(StatsSerializer(figures).data)


class _SinceSerializer(serializers.Serializer):
    since = InstantField(required=False)


def _idempotency_key(request: Request) -> str | None:
    """The header, checked here because it is transport, not domain: it must fit the column (PostgreSQL
    would refuse a longer one with a 500) and be printable text."""
    key = request.headers.get("Idempotency-Key")
    if key is None or key.strip() == "":
        return None
    key = key.strip()
    if len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise serializers.ValidationError(
            {"Idempotency-Key": [f"must be printable text of at most {IDEMPOTENCY_KEY_MAX} characters"]}
        )
    return key


def _preview(
    spec: timing.ScheduleSpec, fire_times: list[services.PreviewRun], excluded_days: list[date] | None = None
) -> dict[str, Any]:
    data = {
        "valid": True,
        "description": timing.describe(spec),
        "timezone": spec.timezone,
        "next_runs": fire_times,
        "excluded_days": excluded_days or [],
    }
    return SchedulePreviewSerializer(data).data


# --- Schedule helpers for forms ---------------------------------------------------------------------------


class CronPreviewView(APIView):
    """For a form that validates as the user types: is the expression valid in that zone, what does it mean,
    and when would it fire."""

    error_field_names = {"cron_expression": "expression", "after": "start"}

    @extend_schema(
        summary="Validate and preview a cron expression",
        request=CronPreviewSerializer,
        responses=SchedulePreviewSerializer,
        tags=["schedules"],
        examples=[
            OpenApiExample(
                "Weekdays at 09:00 in New York",
                value={"expression": "0 9 * * 1-5", "timezone": "America/New_York", "count": 3},
                request_only=True,
            ),
            OpenApiExample(
                "Preview",
                value={
                    "valid": True,
                    "description": "At 09:00, Monday through Friday (America/New_York)",
                    "timezone": "America/New_York",
                    "next_runs": [
                        {"utc": "2026-03-09T13:00:00Z", "local": "2026-03-09T09:00:00-04:00", "note": None}
                    ],
                },
                response_only=True,
                status_codes=["200"],
            ),
            OpenApiExample(
                "Invalid expression",
                value={"expression": ["field 2 (hour): 25 is out of range 0-23"]},
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        body = CronPreviewSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = {
            "kind": TriggerKind.CRON,
            "cron_expression": body.validated_data["expression"],
            "timezone": body.validated_data["timezone"],
        }
        fire_times = services.trigger_preview(
            after=body.validated_data.get("start"), count=body.validated_data["count"], **fields
        )
        return Response(_preview(validation.spec_from(fields), fire_times))


class LimitsSerializer(serializers.Serializer):
    max_triggers = serializers.IntegerField(help_text="Live triggers you may have.")
    max_concurrent_runs = serializers.IntegerField(help_text="Runs of your triggers at once (0 = unlimited).")
    max_concurrent_per_workflow = serializers.IntegerField(
        help_text="Runs of one workflow (your triggers with the same workflow id) at once (0 = unlimited)."
    )
    custom = serializers.BooleanField(help_text="Whether an operator set limits for you (else the defaults).")
    triggers = serializers.IntegerField(help_text="Live triggers you have now.")


class LimitsView(APIView):
    """Your limits as they apply (an operator's per-user values over the defaults), with your trigger count;
    a waiting run held back by one names it in its `skip_reason` (`owner_limit`, `workflow_limit`)."""

    @extend_schema(summary="Your limits", responses=LimitsSerializer, tags=["schedules"])
    def get(self, request: Request) -> Response:
        owner_id = cast(int, request.user.pk)  # authenticated: the API refuses anonymous requests
        limits = selectors.limits_for(owner_id)
        count = Trigger.objects.live().filter(owner_id=owner_id).count()
        return Response(LimitsSerializer({**limits.as_json(), "triggers": count}).data)


class PresetListView(APIView):
    @extend_schema(summary="Schedule templates", responses=PresetSerializer(many=True), tags=["schedules"])
    def get(self, request: Request) -> Response:
        return Response(PresetSerializer(timing.PRESETS, many=True).data)


# --- Auth -------------------------------------------------------------------------------------------------


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>` or `Bearer <token>`.")


class TokenView(ObtainAuthToken):
    """DRF's token endpoint, with this project's body guard and a per-IP throttle against password guessing.
    No authentication is attempted, so a browser's session cookie cannot turn this into a CSRF check."""

    authentication_classes: list = []
    throttle_classes = [AuthRateThrottle]
    parser_classes = [GuardedJSONParser, GuardedFormParser]

    @extend_schema(
        summary="Get an API token",
        responses={200: TokenSerializer},
        tags=["auth"],
        examples=[
            OpenApiExample("Credentials", value={"username": "alice", "password": "…"}, request_only=True),
            OpenApiExample(
                "Token", value={"token": "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"}, response_only=True
            ),
        ],
    )
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().post(request, *args, **kwargs)
