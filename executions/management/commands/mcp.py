"""`python manage.py mcp --user alice`: an MCP server on stdio exposing the agent tools, run as that user.

For an MCP client (Claude Desktop, an agent framework) configured with this command: the same tools, the
same validation and the same exactly-once scheduling as `/api/v1/agent-tools/`. The protocol owns stdout,
so everything else (logs) goes to stderr, as the project's logging already does.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions import agent_tools


class Command(BaseCommand):
    help = "Serve the agent tools over MCP (stdio), as the given user."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="Username the tools run as.")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {options['user']!r}")
        anyio.run(serve, user)


async def serve(user: Any) -> None:
    import mcp.types as types
    from mcp.server.lowlevel import Server
    from mcp.server.stdio import stdio_server

    server: Server = Server("workflow-scheduler")
    # Django's ORM is synchronous: every tool runs in the one thread asgiref keeps for sync code.
    run = sync_to_async(agent_tools.call, thread_sensitive=True)

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return [
            types.Tool(name=tool.name, description=tool.description, inputSchema=tool.parameters)
            for tool in agent_tools.TOOLS.values()
        ]

    @server.call_tool()
    async def call_tool(name: str, arguments: dict[str, Any]) -> list[types.TextContent]:
        try:
            result = await run(user, name, arguments)
        except agent_tools.ToolError as exc:
            raise ValueError(json.dumps(exc.errors)) from None  # an isError result the agent can read
        return [types.TextContent(type="text", text=json.dumps(result, default=str))]

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
