"""`/api/scheduler/` routes of the earlier scheduler, with or without the trailing slash its clients used."""

from __future__ import annotations

from django.urls import re_path

from schedules.api import compat

urlpatterns = [
    re_path(r"^register/?$", compat.RegisterView.as_view(), name="compat-register"),
    re_path(r"^unregister/?$", compat.UnregisterView.as_view(), name="compat-unregister"),
    re_path(r"^pause/?$", compat.PauseView.as_view(), name="compat-pause"),
    re_path(r"^history/?$", compat.HistoryView.as_view(), name="compat-history"),
]
