"""Execution API views: the history of runs (every slot that was due, skipped ones included), with cancel and
re-run. Thin: querysets scoped to the user, state changes through `executions.services`.

Executions of a deleted trigger stay listed here: deleting a schedule must not erase what it did.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView, get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from executions import services
from executions.api.serializers import CancelSerializer, ExecutionDetailSerializer, ExecutionSerializer
from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from toolkit.api import INSTANT_HINT, parse_instant


def scoped_object(view: GenericAPIView) -> Any:
    """The object a detail route or action names, looked up in the view's user-scoped queryset only.

    DRF's `get_object` would also apply the list filters of the query string (and, on an action that lists
    another model, a filterset that does not fit the queryset); a detail lookup needs neither. An id that is
    malformed, someone else's or unknown is the same 404."""
    obj = get_object_or_404(view.get_queryset(), pk=view.kwargs[view.lookup_url_kwarg or view.lookup_field])
    view.check_object_permissions(view.request, obj)
    return obj


def visible_executions(user) -> QuerySet[Execution]:
    """Runs of the user's triggers (deleted ones included); staff see everyone's."""
    rows = Execution.objects.select_related("trigger", "requested_by")
    return rows if user.is_staff else rows.filter(trigger__owner=user)


class InstantFormField(forms.Field):
    """A filter value read like every instant in the API (ISO 8601 with an offset), so `?since=` and a
    request body agree, and an out-of-range instant is a 400 rather than an overflow in the database."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        try:
            return parse_instant(value)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None


class InstantFilter(filters.Filter):
    field_class = InstantFormField


class ExecutionFilter(filters.FilterSet):
    trigger = filters.UUIDFilter(field_name="trigger_id", help_text="Runs of this trigger only.")
    status = filters.ChoiceFilter(choices=ExecutionStatus.choices)
    origin = filters.ChoiceFilter(choices=ExecutionOrigin.choices)
    since = InstantFilter(
        field_name="created_at", lookup_expr="gte", help_text=f"Recorded at or after ({INSTANT_HINT})."
    )
    until = InstantFilter(
        field_name="created_at", lookup_expr="lt", help_text=f"Recorded before ({INSTANT_HINT})."
    )

    class Meta:
        model = Execution
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(summary="List your executions", tags=["executions"]),
    retrieve=extend_schema(summary="Get an execution with its attempts", tags=["executions"]),
)
class ExecutionViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Execution.objects.none()  # tells the schema the model; get_queryset() scopes to the user
    lookup_value_regex = "[^/]+"  # any id reaches the view, so even "0.5" gets a JSON 404
    serializer_class = ExecutionSerializer
    filterset_class = ExecutionFilter

    def get_queryset(self) -> QuerySet[Execution]:
        rows = visible_executions(self.request.user)
        if self.action != "list":
            rows = rows.prefetch_related("attempt_set")
        return rows

    def get_object(self) -> Execution:
        return scoped_object(self)

    def get_serializer_class(self):
        return ExecutionSerializer if self.action == "list" else ExecutionDetailSerializer

    @extend_schema(
        summary="Cancel an execution",
        description="A run that has not finished stops (a running one is asked to stop when its target can); "
        "cancelling a finished run changes nothing.",
        request=CancelSerializer,
        responses=ExecutionDetailSerializer,
        tags=["executions"],
        examples=[OpenApiExample("With a reason", value={"reason": "wrong input"}, request_only=True)],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        execution = services.execution_cancel(
            execution=self.get_object(), reason=body.validated_data["reason"]
        )
        return Response(ExecutionDetailSerializer(self._reload(execution)).data)

    @extend_schema(
        summary="Re-run an execution",
        description="Starts a new manual run with the same input; it points at this one (`rerun_of`).",
        request=None,
        responses={201: ExecutionDetailSerializer},
        tags=["executions"],
    )
    @action(detail=True, methods=["post"], filterset_class=None)
    def rerun(self, request: Request, pk: str | None = None) -> Response:
        execution = services.execution_rerun(execution=self.get_object(), requested_by=request.user)
        return Response(
            ExecutionDetailSerializer(self._reload(execution)).data, status=status.HTTP_201_CREATED
        )

    def _reload(self, execution: Execution) -> Execution:
        """The row as the detail view shows it (attempts, trigger), after the service changed it."""
        return self.get_queryset().get(pk=execution.pk)
