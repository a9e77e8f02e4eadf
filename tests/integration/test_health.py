"""/healthz against the real database and Redis, and a clear 503 when a dependency is down."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_healthz_reaches_the_real_database_and_redis_and_names_the_missing_fleet(
    client: Client, redis_client
) -> None:
    """No beat or worker runs here: the dependencies answer, and the 503 says what is missing (the healthy
    fleet is covered with real processes in test_health_deep and the e2e tests)."""
    response = client.get("/healthz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert (checks["database"], checks["redis"]) == ("ok", "ok")
    assert checks["beat"]["status"] != "ok"
    assert checks["workers"]["status"] != "ok"


def test_healthz_is_503_naming_redis_when_redis_is_down(client: Client, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down: ")


def test_readyz_only_needs_the_database(client: Client, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["redis"].startswith("down: ")
    assert "sweeper" in body["serving"]["run_now"]
