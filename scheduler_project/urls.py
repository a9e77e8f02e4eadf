"""Root URLs: admin, health, the REST API and its docs."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from executions import callbacks
from scheduler_project import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Completion callbacks are signed with the internal secret and sit outside the API's authentication.
    path(
        "api/v1/executions/<uuid:execution_id>/complete", callbacks.complete_view, name="execution-complete"
    ),
    path("api/v1/executions/<uuid:execution_id>/complete/", callbacks.complete_view),
    path("api/v1/", include("schedules.api.urls")),
    path("api/v1/", include("executions.api.urls")),
    path("api/scheduler/", include("schedules.api.compat_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
