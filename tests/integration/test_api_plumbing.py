"""The project-wide API plumbing (`toolkit/api.py`): token auth in both header forms, 401 for
anonymous, throttling with Retry-After, the request body guard, and one error shape for every kind of bad
input — never a 500. Also the helpers the other `test_api_*` modules share."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from schedules import services
from schedules.models import Trigger
from toolkit import clock
from toolkit.api import field_errors, one_line

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TRIGGERS = "/api/v1/triggers/"

# --- Shared helpers ---------------------------------------------------------------------------------------


def client_for(user, *, scheme: str = "Token") -> APIClient:
    """A client authenticated the way API users are: a real token in the Authorization header."""
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token.key}")
    return client


def make_trigger(owner, **fields: Any) -> Trigger:
    values = {"name": "nightly", "workflow_id": "wf-1", "cron_expression": "0 9 * * 1-5"}
    values.update(fields)
    return services.trigger_register(owner=owner, **values)


def make_execution(trigger: Trigger, **fields: Any) -> Execution:
    """A recorded run, written directly: these tests read history, they do not exercise the fire path."""
    values: dict[str, Any] = {
        "origin": ExecutionOrigin.MANUAL,
        "requested_at": clock.now(),
        "status": ExecutionStatus.SUCCEEDED,
    }
    values.update(fields)
    return Execution.objects.create(trigger=trigger, **values)


@pytest.fixture(autouse=True)
def api_test_defaults() -> None:
    """For every API test module (the others import this fixture): throttle counters start at zero, since
    they live in the cache and user ids repeat across tests."""
    cache.clear()


# --- Authentication ---------------------------------------------------------------------------------------


def test_token_endpoint_returns_a_token_that_works_as_token_and_bearer(client, user) -> None:
    response = client.post(
        "/api/v1/auth/token/",
        {"username": "alice", "password": "pw-alice-123"},
        content_type="application/json",
    )
    assert response.status_code == 200
    token = response.json()["token"]
    for scheme in ("Token", "Bearer", "bearer"):
        answer = client.get(TRIGGERS, HTTP_AUTHORIZATION=f"{scheme} {token}")
        assert answer.status_code == 200, scheme


def test_token_endpoint_accepts_a_form_body_and_refuses_bad_credentials(client, user) -> None:
    form = client.post(
        "/api/v1/auth/token",
        "username=alice&password=pw-alice-123",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 200, "curl -d works, and so does the path without its trailing slash"
    wrong = client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": "nope"}, content_type="application/json"
    )
    assert wrong.status_code == 400
    assert "non_field_errors" in wrong.json()
    missing = client.post("/api/v1/auth/token/", {}, content_type="application/json")
    assert set(missing.json()) == {"username", "password"}


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="anonymous"),
        pytest.param("Token 0123456789abcdef0123456789abcdef01234567", id="unknown-token"),
        pytest.param("Bearer not-a-token", id="bad-bearer"),
        pytest.param("Token", id="no-credentials"),
        pytest.param("Token a b", id="spaces"),
        pytest.param("Token " + "a" * 500, id="too-long"),
    ],
)
def test_missing_or_bad_credentials_are_401_with_a_challenge(client, header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get(TRIGGERS, **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"detail"}


def test_session_login_works_for_the_browser(client, user) -> None:
    client.force_login(user)
    assert client.get(TRIGGERS).status_code == 200


# --- Throttling -------------------------------------------------------------------------------------------


def test_user_throttle_answers_429_with_retry_after(settings, user, other_user) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "3/min", "auth": "2/min"},
    }
    alice = client_for(user)
    assert [alice.get(TRIGGERS).status_code for _ in range(3)] == [200, 200, 200]
    throttled = alice.get(TRIGGERS)
    assert throttled.status_code == 429
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert "detail" in throttled.json()
    assert client_for(other_user).get(TRIGGERS).status_code == 200, "the limit is per user"


def test_token_endpoint_is_throttled_per_client_address(settings, client, user) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": None, "auth": "2/min"},
    }
    body = {"username": "alice", "password": "guess"}
    codes = [
        client.post("/api/v1/auth/token/", body, content_type="application/json").status_code
        for _ in range(3)
    ]
    assert codes == [400, 400, 429]


# --- Bodies and error shapes ------------------------------------------------------------------------------


def test_oversized_body_is_413_not_500(settings, user) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    payload = json.dumps({"name": "x" * 5000, "workflow_id": "w", "cron_expression": "* * * * *"})
    response = client_for(user).post(TRIGGERS, payload, content_type="application/json")
    assert response.status_code == 413
    assert "1024 bytes" in response.json()["detail"]
    assert not Trigger.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("{", id="truncated"),
        pytest.param("[" * 100_000, id="nested-too-deep"),
        pytest.param('{"name": NaN}', id="nan"),
        pytest.param('{"interval_seconds": 1e999}', id="float-overflow"),
        pytest.param('{"interval_seconds": ' + "9" * 5000 + "}", id="int-too-many-digits"),
        pytest.param(b'{"name": "\xff"}', id="not-utf8"),
        pytest.param('{"name": "\\ud800"}', id="lone-surrogate"),
    ],
)
def test_malformed_json_is_400_naming_the_body(user, body: str | bytes) -> None:
    response = client_for(user).post(TRIGGERS, body, content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()) == ["body"]
    assert response.json()["body"][0].startswith("JSON parse error")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        pytest.param([1, 2], "non_field_errors", id="array-body"),
        pytest.param({"name": "n", "workflow_id": "w", "cron_expression": "0 25 * * *"}, "cron_expression",
                     id="domain-error"),
        pytest.param({"name": "n", "workflow_id": "w", "interval_seconds": 10**40, "kind": "interval"},
                     "interval_seconds", id="huge-number"),
        pytest.param({"name": "n", "workflow_id": "w", "max_attempts": "many"}, "max_attempts",
                     id="wrong-type"),
        pytest.param({"name": "n", "workflow_id": "w", "start_at": "tomorrow"}, "start_at", id="bad-instant"),
        pytest.param({"name": "n", "workflow_id": "w", "start_at": "2026-01-01T09:00:00"}, "start_at",
                     id="naive-instant"),
        pytest.param({"name": "n", "workflow_id": "w", "end_at": "9999-12-31T23:59:59-05:00"}, "end_at",
                     id="instant-out-of-range"),
        pytest.param({"name": "n\x00", "workflow_id": "w", "cron_expression": "* * * * *"}, "name", id="nul"),
        pytest.param({"name": "n", "workflow_id": "w", "input": [1]}, "input", id="input-not-object"),
        pytest.param({"name": "n", "workflow_id": "w", "overlap_policy": "sometimes"}, "overlap_policy",
                     id="unknown-choice"),
        pytest.param({"name": "n", "workflow_id": "w", "cron_expresion": "* * * * *"}, "cron_expresion",
                     id="unknown-field"),
    ],
)  # fmt: skip
def test_bad_input_is_400_naming_the_field(user, payload: Any, field: str) -> None:
    response = client_for(user).post(TRIGGERS, payload, format="json")
    assert response.status_code == 400, response.content
    body = response.json()
    assert field in body, body
    assert all(isinstance(m, str) for messages in body.values() for m in messages)
    assert not Trigger.objects.exists(), "nothing half-saved"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("status=sleeping", id="unknown-status"),
        pytest.param("kind=weekly", id="unknown-kind"),
        pytest.param("ordering=owner__password", id="unknown-ordering"),
        pytest.param("limit=abc", id="limit-not-a-number"),
        pytest.param("limit=0", id="limit-zero"),
        pytest.param("offset=-1", id="negative-offset"),
        pytest.param("offset=99999999999999999999999", id="absurd-offset"),
        pytest.param("search=a%00b", id="nul-in-search"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(user, query: str) -> None:
    response = client_for(user).get(f"{TRIGGERS}?{query}")
    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()


def test_limit_above_the_maximum_is_capped(settings, user) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "MAX_PAGE_SIZE": 2}
    for n in range(3):
        make_trigger(user, name=f"t{n}")
    body = client_for(user).get(f"{TRIGGERS}?limit=500").json()
    assert body["count"] == 3
    assert len(body["results"]) == 2


def test_bad_ids_in_paths_are_404(user) -> None:
    api = client_for(user)
    for path in ("/api/v1/triggers/not-a-uuid/", "/api/v1/executions/123/", "/api/v1/triggers/%00/pause/"):
        response = api.get(path) if "pause" not in path else api.post(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"detail"}


def test_error_shaping_flattens_nested_detail_and_picks_one_line() -> None:
    errors = field_errors({"input": {"a": ["bad"]}, "name": ["empty", "long"], "x": "plain"})
    assert errors == {"input.a": ["bad"], "name": ["empty", "long"], "x": ["plain"]}
    assert field_errors(["whole request"]) == {"non_field_errors": ["whole request"]}
    assert one_line({"cronExpression": ["field 2 (hour): 25 is out of range 0-23"]}) == (
        "cronExpression: field 2 (hour): 25 is out of range 0-23"
    )
    assert one_line({"detail": ["Not found."]}) == "Not found."
