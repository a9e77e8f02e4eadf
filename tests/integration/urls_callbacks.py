"""The completion callback's routes, as the lead wires them in `scheduler_project/urls.py`; tests use this
module (`@pytest.mark.urls`) so they do not depend on the root URLconf."""

from django.urls import path

from executions.callbacks import complete_view

urlpatterns = [
    path("api/v1/executions/<uuid:execution_id>/complete", complete_view, name="execution-complete"),
    path("api/v1/executions/<uuid:execution_id>/complete/", complete_view),
]
