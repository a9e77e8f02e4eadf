"""`/api/v1/agent-tools/`: the agent tool definitions (function-calling format) and a route that runs one
as the calling user. Thin: `executions.agent_tools` holds the tools; refusals become the API's usual 400
naming the field (404 for a schedule that is not the caller's)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import agent_tools


class ToolCallSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=sorted(agent_tools.TOOLS), help_text="The tool to run.")
    arguments = serializers.JSONField(
        required=False, default=dict, help_text="Its arguments (a JSON object)."
    )


class AgentToolListView(APIView):
    @extend_schema(
        summary="Agent tool definitions",
        description="JSON-Schema tool definitions in the function-calling format (`{type: function, "
        "function: {name, description, parameters}}`): create, pause, resume, stop and list schedules, and "
        "read runs.",
        responses={200: dict},
        tags=["agents"],
    )
    def get(self, request: Request) -> Response:
        return Response({"tools": [tool.definition() for tool in agent_tools.TOOLS.values()]})


class AgentToolCallView(APIView):
    @extend_schema(
        summary="Run an agent tool",
        description="Runs one tool as the calling user and returns `{name, result}`; bad arguments are a 400 "
        "naming the argument, a schedule that is not yours a 404.",
        request=ToolCallSerializer,
        responses={200: dict},
        tags=["agents"],
        examples=[
            OpenApiExample(
                "Create",
                value={
                    "name": "schedule_create",
                    "arguments": {
                        "name": "Daily digest",
                        "workflow_id": "wf-digest",
                        "cron_expression": "0 8 * * *",
                    },
                },
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        body = ToolCallSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        name: str = body.validated_data["name"]
        arguments: Any = body.validated_data["arguments"]
        try:
            result = agent_tools.call(request.user, name, arguments)
        except agent_tools.ToolError as exc:
            if exc.not_found:
                raise exceptions.NotFound(next(iter(exc.errors.values()))[0]) from None
            raise serializers.ValidationError(exc.errors) from None
        return Response({"name": name, "result": result})
