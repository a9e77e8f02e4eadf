"""Health endpoints. `/healthz` is the fleet's: every dependency the scheduler needs to keep its promise is
checked and named, so a 503 says what to fix. `/readyz` is the web process's own readiness."""

from __future__ import annotations

from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


CHECKS: dict[str, Callable[[], str]] = {"database": check_database, "redis": check_redis}


def run_checks(checks: dict[str, Callable[[], str]]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    healthy = True
    for name, check in checks.items():
        try:
            results[name] = check()
        except Exception as exc:  # any failure of a dependency is reported, never raised
            healthy = False
            results[name] = f"down: {type(exc).__name__}"
    return healthy, results


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, results = run_checks(CHECKS)
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results}, status=200 if healthy else 503
    )


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    healthy, results = run_checks({"database": check_database})
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results}, status=200 if healthy else 503
    )
