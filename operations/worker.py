"""The cron service's worker switch (`POST /worker/stop`, `POST /worker/start`, `GET /worker/status`), for
staff: a fleet-wide stop of firing (`executions.services.fleet`) and what the fleet is doing meanwhile."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import services
from executions.models import FleetSwitch
from operations import status
from toolkit import clock


def _answer(switch: FleetSwitch, *, fleet: bool = False) -> dict[str, Any]:
    """The switch; with `fleet`, the snapshot `/api/v1/status/` gives (beat leadership and its last tick,
    queues, workers), whose Redis figures are left out, not a 500, while Redis is away."""
    answer: dict[str, Any] = {
        "running": not switch.firing_stopped,
        "changed_at": clock.iso_z(switch.changed_at),
        "changed_by": switch.changed_by or None,
        "reason": switch.reason or None,
    }
    if fleet:
        snapshot = status.fleet_status(inspect_timeout=1.0).as_json()
        answer.update(beat=snapshot["beat"], fleet=snapshot)
    return answer


class StopSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


class WorkerStopView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        body = StopSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"]
        switch = services.fleet_stop_firing(by=request.user.get_username(), reason=reason)
        return Response(_answer(switch))


class WorkerStartView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        return Response(_answer(services.fleet_start_firing(by=request.user.get_username())))


class WorkerStatusView(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        return Response(_answer(services.fleet_switch(), fleet=True))
