"""The OpenAPI schema is valid and complete, and the API keeps its word: schemathesis generates requests for
every operation (valid and invalid ones, a bounded number each) against the WSGI app, authenticated with a
token, and checks that nothing answers 5xx and that every status code, content type, header and body is the
one the schema documents."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest
import schemathesis
import yaml
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from executions.models import ExecutionStatus
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
    make_execution,
    make_trigger,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

#: Examples per operation: enough to reach every field's edge cases, few enough that the run stays within
#: about half a minute. Derandomized, so CI sees the same cases each time; for a deeper, random hunt run
#: `API_FUZZ_EXAMPLES=200 API_FUZZ_RANDOM=1 make test PYTEST_ARGS=tests/integration/test_api_schema.py`.
MAX_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "15"))
DERANDOMIZE = os.environ.get("API_FUZZ_RANDOM") != "1"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXPECTED_PATHS = {
    "/api/v1/auth/token/", "/api/v1/triggers/", "/api/v1/triggers/{id}/", "/api/v1/triggers/{id}/pause/",
    "/api/v1/triggers/{id}/resume/", "/api/v1/triggers/{id}/run/", "/api/v1/triggers/{id}/preview/",
    "/api/v1/triggers/{id}/executions/", "/api/v1/triggers/{id}/stats/", "/api/v1/triggers/{id}/backfill/",
    "/api/v1/triggers/{id}/save-as-template/", "/api/v1/calendars/", "/api/v1/calendars/{id}/",
    "/api/v1/templates/", "/api/v1/templates/{id}/", "/api/v1/templates/{id}/create-trigger/",
    "/api/v1/executions/",
    "/api/v1/executions/{id}/", "/api/v1/executions/{id}/cancel/", "/api/v1/executions/{id}/rerun/",
    "/api/v1/cron/preview/", "/api/v1/presets/", "/api/v1/limits/", "/api/v1/credits/",
    "/api/v1/credits/{user_id}/", "/api/scheduler/register/",
    "/api/scheduler/unregister/",
    "/api/scheduler/pause/", "/api/scheduler/history/", "/api/_flows/{name}/schedule/",
    "/api/_flows/{name}/schedules/", "/api/_flows/{name}/schedules/{id}/", "/api/v1/agent-tools/",
    "/api/v1/agent-tools/call/", "/api/agent/execute/", "/schedules/upsert/", "/schedules/",
    "/schedules/{schedule_id}/", "/schedules/{schedule_id}/pause/", "/schedules/{schedule_id}/runs/",
    "/run-launcher/start/", "/api/v1/notifications/subscriptions/",
    "/api/v1/notifications/subscriptions/{id}/", "/api/v1/notifications/deliveries/",
    "/api/v1/notifications/deliveries/{id}/",
}  # fmt: skip


@pytest.fixture
def wsgi_in_test_transaction() -> Iterator[None]:
    """Requests go through the real WSGI handler, whose request signals close the database connection — the
    one holding this test's transaction. Django's own test client disconnects them the same way."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def seeded(user, settings, wsgi_in_test_transaction):
    """A user with a token, a trigger and a few runs, so generated requests also reach real objects (random
    ids alone would only ever exercise the 404 path). Throttling is off: schemathesis sends hundreds."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": None, "auth": None},
    }
    trigger = make_trigger(user, timezone="America/New_York")
    executions = [
        make_execution(trigger, status=ExecutionStatus.QUEUED),
        make_execution(trigger, status=ExecutionStatus.FAILED, error="boom"),
    ]
    token = Token.objects.create(user=user)
    return {"token": token.key, "trigger": str(trigger.pk), "executions": [str(e.pk) for e in executions]}


# Loaded at import (the app is ready: pytest-django sets Django up before collection) rather than through
# `schemathesis.pytest.from_fixture`, whose lazy mode needs a pytest internal (`Item._nodeid`) that pytest 9
# removed. Generating the schema reads no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_api_conforms_to_its_schema(case, seeded) -> None:
    aim_at_seeded_objects(case, seeded)
    case.call_and_validate(headers={"Authorization": f"Token {seeded['token']}"}, checks=CHECKS)


def aim_at_seeded_objects(case, seeded) -> None:
    """Point most generated ids (path `id`, compat `triggerId`) at the seeded objects; the rest keep their
    random value and exercise the 404 path. Seeded by the case itself, so a failure replays exactly."""
    rng = random.Random(f"{case.path_parameters!r}{case.query!r}{case.body!r}")
    if "id" in (case.path_parameters or {}) and rng.random() < 0.7:
        executions = case.operation.path.startswith("/api/v1/executions/")
        case.path_parameters["id"] = rng.choice(seeded["executions"] if executions else [seeded["trigger"]])
    for container in (case.query, case.body):
        if isinstance(container, dict) and "triggerId" in container and rng.random() < 0.7:
            container["triggerId"] = seeded["trigger"]


def test_schema_lists_every_endpoint_with_examples_and_error_shapes(client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    document = yaml.safe_load(response.content)
    assert set(document["paths"]) == EXPECTED_PATHS
    operations = [op for path in document["paths"].values() for op in path.values()]
    assert all("429" in op["responses"] for op in operations)
    assert all(
        op["responses"]["401"]["content"]
        for op in operations
        if op.get("security") != [{}] and "security" in op
    )
    components = document["components"]["schemas"]
    assert {"FieldErrors", "ErrorDetail", "CompatError", "FlowsError"} <= set(components)
    assert document["components"]["securitySchemes"]["tokenAuth"]["name"] == "Authorization"
    create = document["paths"]["/api/v1/triggers/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["examples"]
    compat = document["paths"]["/api/scheduler/register/"]["post"]
    assert compat["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CompatError"
    )
    assert compat["responses"]["200"]["content"]["application/json"]["examples"]
    assert set(compat["requestBody"]["content"]) == {"application/json", "text/plain"}
    flows = document["paths"]["/api/_flows/{name}/schedule/"]["post"]
    assert flows["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/FlowsError")
    assert flows["requestBody"]["content"]["application/json"]["examples"]


def test_schema_generates_without_warnings_and_validates(tmp_path) -> None:
    """drf-spectacular's own check: every view, field and type resolved, and the document valid OpenAPI 3."""
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_schema_is_public_and_swagger_ui_is_served(client) -> None:
    page = client.get("/api/docs/")
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    assert b"/api/schema/" in page.content
