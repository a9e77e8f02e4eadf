"""`/api/v1/executions/` routes (trailing slash optional, as for every API route)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from executions.api import views

router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or "": the slash is optional
router.register("executions", views.ExecutionViewSet, basename="execution")

urlpatterns = [*router.urls]
