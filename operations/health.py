"""Health endpoints. `/healthz` is the fleet's: every dependency the scheduler needs to keep its promise is
checked and named, so a 503 says what to fix. `/readyz` is the web process's own readiness, for load
balancers and the compose healthcheck: 200 while the database answers (a web process serves the API while a
beat fails over, and while Redis is down: "degraded", with what it still does under `serving`).

`/healthz` checks, in order:

* `database`, `redis` — plain strings, `"ok"` or `"down: <error>"`;
* `beat` — a beat holds the RedBeat leader lock and its heartbeat (written every tick, see
  `metrics.beat_heartbeat`) is younger than `HEALTH_BEAT_MAX_AGE_SECONDS` (three loop intervals): a beat
  that holds the lock but no longer ticks is as bad as none;
* `workers` — at least one worker answers a ping within `HEALTH_WORKER_PING_TIMEOUT` (2 s). The ping stops
  at the first answer, so a healthy fleet answers at once; `count` is the answers received by then, not
  the fleet's size (`/api/v1/status/` lists every worker).

The fleet checks need Redis (the broker is Redis too, and a ping with Redis down would only hang on
reconnects), so with Redis down they are reported `unknown` without being tried.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from operations import metrics, status
from toolkit import redisurl

CheckResult = str | dict[str, Any]


class CheckFailed(Exception):
    """A check that failed with a structured answer (its state and age, not just an error name)."""

    def __init__(self, detail: dict[str, Any]) -> None:
        super().__init__(detail.get("detail", "down"))
        self.detail = detail


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return "ok"


def check_redis() -> str:
    client = redisurl.connect(
        settings.REDIS_URL, master=settings.REDIS_SENTINEL_MASTER, socket_connect_timeout=2, socket_timeout=2
    )
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def check_beat() -> dict[str, Any]:
    beat = status.beat_status(metrics.read_client())
    max_age = settings.HEALTH_BEAT_MAX_AGE_SECONDS
    result: dict[str, Any] = {"status": "ok", "age_seconds": beat.age_seconds}
    if not beat.leader:
        raise CheckFailed({**result, "status": "down", "detail": "no beat holds the leader lock"})
    if beat.age_seconds is None or beat.age_seconds > max_age:
        detail = f"the leader has not ticked for more than {max_age:g}s"
        raise CheckFailed({**result, "status": "down", "detail": detail})
    return result


def check_workers() -> dict[str, Any]:
    from celery import current_app as app

    timeout = settings.HEALTH_WORKER_PING_TIMEOUT
    try:
        replies = app.control.ping(timeout=timeout, limit=1) or []
    except Exception as exc:  # whatever the transport raises is reported, never raised
        raise CheckFailed({"status": "down", "count": 0, "detail": f"{type(exc).__name__}: {exc}"}) from exc
    if not replies:
        raise CheckFailed({"status": "down", "count": 0, "detail": f"no worker answered within {timeout:g}s"})
    return {"status": "ok", "count": len(replies)}


CHECKS: dict[str, Callable[[], CheckResult]] = {"database": check_database, "redis": check_redis}
#: Checks of the processes that do the work; they need Redis.
FLEET_CHECKS: dict[str, Callable[[], CheckResult]] = {"beat": check_beat, "workers": check_workers}


def run_checks(checks: Mapping[str, Callable[[], CheckResult]]) -> tuple[bool, dict[str, CheckResult]]:
    results: dict[str, CheckResult] = {}
    healthy = True
    for name, check in checks.items():
        try:
            results[name] = check()
        except CheckFailed as exc:
            healthy = False
            results[name] = exc.detail
        except Exception as exc:  # any failure of a dependency is reported, never raised
            healthy = False
            results[name] = f"down: {type(exc).__name__}"
    return healthy, results


def _answer(healthy: bool, results: dict[str, CheckResult]) -> JsonResponse:
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": results}, status=200 if healthy else 503
    )


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    healthy, results = run_checks(CHECKS)
    if results.get("redis") == "ok":
        fleet_healthy, fleet = run_checks(FLEET_CHECKS)
    else:
        fleet_healthy = False
        fleet = {name: {"status": "unknown", "detail": "not checked: Redis is down"} for name in FLEET_CHECKS}
    return _answer(healthy and fleet_healthy, {**results, **fleet})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready while the database answers (the API reads and writes it); Redis is checked and reported, not
    required, and `serving` says what this process does without it, so an operator reading a degraded
    answer knows what users see."""
    database_ok, results = run_checks({"database": check_database})
    redis_ok, redis_results = run_checks({"redis": check_redis})
    results.update(redis_results)
    if not database_ok:
        state, serving = "unavailable", {"api": "503 with Retry-After until the database is back"}
    elif redis_ok:
        state, serving = "ok", {"api": "full", "run_now": "launched at once", "throttling": "on"}
    else:
        state = "degraded"
        serving = {
            "api": "full, from the database",
            "run_now": "recorded now; launched by the sweeper once the broker is back",
            "throttling": "off (failing open while Redis is down)",
            "schedules": "saved now; their beat entries are rebuilt when Redis is back",
        }
    return JsonResponse(
        {"status": state, "checks": results, "serving": serving}, status=200 if database_ok else 503
    )
