"""Root URLs: the landing page, admin, health, the REST API and its docs."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from executions import callbacks
from executions.api import agent
from operations import health, landing, metrics, status, worker
from schedules import tick
from schedules.api import cronsvc

urlpatterns = [
    path("", landing.landing_view, name="landing"),
    path("favicon.ico", landing.favicon_view, name="favicon"),
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus scrapes with its own optional bearer token (METRICS_TOKEN), outside the API's authentication.
    path("metrics", metrics.metrics_view, name="metrics"),
    re_path(r"^api/v1/status/?$", status.StatusView.as_view(), name="fleet-status"),
    # The beat-less tick has its own secret and sits outside the API's authentication.
    path("api/v1/tick", tick.tick_view, name="tick"),
    path("api/v1/tick/", tick.tick_view),
    # Completion callbacks are signed with the internal secret and sit outside the API's authentication.
    path(
        "api/v1/executions/<uuid:execution_id>/complete", callbacks.complete_view, name="execution-complete"
    ),
    path("api/v1/executions/<uuid:execution_id>/complete/", callbacks.complete_view),
    path("api/v1/", include("schedules.api.urls")),
    path("api/v1/", include("executions.api.urls")),
    path("api/v1/", include("notifications.api.urls")),
    path("api/scheduler/", include("schedules.api.compat_urls")),
    path("api/_flows/", include("schedules.api.flows_urls")),
    # The agent task queue's routes, as that system's clients call them (its cron secret, its shapes).
    re_path(r"^api/agent/execute/?$", agent.AgentExecuteView.as_view(), name="agent-execute"),
    re_path(r"^api/cron/check-scheduled-tasks/?$", agent.check_scheduled_tasks, name="agent-cron-check"),
    # The Python cron service's routes, at the paths its clients call (`/schedules/…`, `/health`).
    re_path(r"^schedules/upsert/?$", cronsvc.UpsertView.as_view(), name="cronsvc-upsert"),
    re_path(r"^schedules/?$", cronsvc.ScheduleListView.as_view(), name="cronsvc-list"),
    re_path(r"^schedules/(?P<schedule_id>[^/]+)/pause/?$", cronsvc.PauseView.as_view(), name="cronsvc-pause"),
    re_path(r"^schedules/(?P<schedule_id>[^/]+)/runs/?$", cronsvc.RunsView.as_view(), name="cronsvc-runs"),
    re_path(r"^schedules/(?P<schedule_id>[^/]+)/?$", cronsvc.ScheduleView.as_view(), name="cronsvc-schedule"),
    re_path(r"^run-launcher/start/?$", cronsvc.RunLauncherView.as_view(), name="cronsvc-launch"),
    re_path(r"^health/?$", health.healthz, name="cronsvc-health"),
    re_path(r"^worker/stop/?$", worker.WorkerStopView.as_view(), name="cronsvc-worker-stop"),
    re_path(r"^worker/start/?$", worker.WorkerStartView.as_view(), name="cronsvc-worker-start"),
    re_path(r"^worker/status/?$", worker.WorkerStatusView.as_view(), name="cronsvc-worker-status"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

# Errors Django handles outside a view (a middleware's) answer in JSON; an outage is a 503 (toolkit.outage).
handler500 = "toolkit.outage.server_error"
