"""`/api/v1/executions/` routes (trailing slash optional, as for every API route)."""

from __future__ import annotations

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from executions.api import agent_tools, credits, views

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or "": the slash is optional
router.register("executions", views.ExecutionViewSet, basename="execution")

urlpatterns = [
    *router.urls,
    re_path(r"^agent-tools/?$", agent_tools.AgentToolListView.as_view(), name="agent-tools"),
    re_path(r"^agent-tools/call/?$", agent_tools.AgentToolCallView.as_view(), name="agent-tools-call"),
    re_path(r"^credits/?$", credits.OwnCreditsView.as_view(), name="credits"),
    re_path(r"^credits/(?P<user_id>[^/]+)/?$", credits.UserCreditsView.as_view(), name="credits-user"),
]
