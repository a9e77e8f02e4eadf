"""The operations routes, as the lead wires them in `scheduler_project/urls.py`; tests use this module
(`@pytest.mark.urls`) so they do not depend on the root URLconf."""

from django.urls import path, re_path

from operations import health, metrics, status

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    # Like every /api/v1/ route, with or without its trailing slash.
    re_path(r"^api/v1/status/?$", status.StatusView.as_view(), name="fleet-status"),
]
