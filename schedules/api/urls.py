"""`/api/v1/` routes for triggers, schedule helpers and tokens. Every route takes its trailing slash or not:
a POST without it must not meet Django's APPEND_SLASH redirect, which cannot carry a body."""

from __future__ import annotations

from django.urls import re_path
from rest_framework.routers import SimpleRouter

from schedules.api import library, views

# SimpleRouter, not DefaultRouter: two apps share the /api/v1/ prefix and each DefaultRouter would add its own
# root view there; the schema at /api/schema/ is the index.
router = SimpleRouter()
router.trailing_slash = "/?"  # the constructor only knows "/" or "": the slash is optional
router.register("triggers", views.TriggerViewSet, basename="trigger")
router.register("calendars", library.CalendarViewSet, basename="calendar")
router.register("templates", library.TemplateViewSet, basename="template")

urlpatterns = [
    re_path(r"^auth/token/?$", views.TokenView.as_view(), name="api-token"),
    re_path(r"^cron/preview/?$", views.CronPreviewView.as_view(), name="cron-preview"),
    re_path(r"^presets/?$", views.PresetListView.as_view(), name="presets"),
    re_path(r"^limits/?$", views.LimitsView.as_view(), name="limits"),
    *router.urls,
]
