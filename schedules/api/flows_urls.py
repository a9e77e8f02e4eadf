"""`/api/_flows/` routes of the flows scheduling API, with or without a trailing slash."""

from __future__ import annotations

from django.urls import re_path

from schedules.api import flows

urlpatterns = [
    re_path(r"^(?P<name>[^/]+)/schedule/?$", flows.FlowScheduleCreateView.as_view(), name="flows-schedule"),
    re_path(r"^(?P<name>[^/]+)/schedules/?$", flows.FlowScheduleListView.as_view(), name="flows-schedules"),
    re_path(
        r"^(?P<name>[^/]+)/schedules/(?P<id>[^/]+)/?$",
        flows.FlowScheduleDeleteView.as_view(),
        name="flows-schedule-delete",
    ),
]
