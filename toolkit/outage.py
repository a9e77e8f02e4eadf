"""A dependency that went away is an answer, not a crash: requests that need the database or Redis while it is
unreachable get 503 JSON with `Retry-After`, in the API's error shape, and the process recovers by itself
once the dependency is back (Django reconnects per request: `CONN_HEALTH_CHECKS`; redis-py and kombu per
call).

Three hooks, because Django hands an exception to a different place depending on where it was raised:
`api_exception_handler` (inside a DRF view: it knows the view's error envelope), `OutageMiddleware`
(inside any other view: admin, health, callbacks) and `server_error`, the project's `handler500` (raised in
a middleware, e.g. a session saved on the way out). Each one answers only for outages; every other error
stays what it was (a 500 that is logged), since hiding a bug behind a 503 would only delay finding it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

#: What a dependency being unreachable looks like from here. `DatabaseError` itself is not in it: an
#: integrity or data error is a bug or a bad input, never an outage.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError)
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.ConnectionError, redis.TimeoutError, BrokerError)


def unavailable(exc: BaseException | None) -> str | None:
    """Which dependency `exc` says is unreachable ("database", "redis"), or None for any other error.
    Follows `__cause__` / `__context__`, since Django, kombu and DRF wrap what they catch."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, DATABASE_ERRORS):
            return "database"
        if isinstance(exc, REDIS_ERRORS):
            return "redis"
        if isinstance(exc, DatabaseError):
            return None
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def retry_after() -> int:
    return int(getattr(settings, "OUTAGE_RETRY_AFTER_SECONDS", 5))


def body(dependency: str, *, style: str = "v1") -> dict[str, Any]:
    """The error body: the API's `{"detail": ...}` with the problem-details members beside it (RFC 9457),
    or the compat API's `{"success": false, "error": ...}`, or the flows API's `{"error": true, ...}`."""
    detail = f"the {dependency} is unavailable; try again shortly"
    if style == "compat":
        return {"success": False, "error": detail}
    if style == "flows":
        return {"error": True, "statusCode": 503, "statusMessage": detail, "message": detail}
    return {
        "detail": detail,
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "unavailable": dependency,
    }


def response(dependency: str) -> JsonResponse:
    answer = JsonResponse(body(dependency), status=503, content_type="application/problem+json")
    answer["Retry-After"] = str(retry_after())
    answer["Cache-Control"] = "no-store"
    quiet(answer)
    return answer


def quiet(answer: HttpResponse) -> HttpResponse:
    """Django logs every 5xx as an error; an outage answer is logged by `warn`, once per 10 s instead."""
    answer._has_been_logged = True  # type: ignore[attr-defined]
    return answer


_last_warned: dict[str, float] = {}


def warn(dependency: str, exc: BaseException, where: str) -> None:
    """One warning per dependency and process every 10 s: an outage under load must not flood the log."""
    now = time.monotonic()
    if now - _last_warned.get(dependency, -1e9) >= 10:
        _last_warned[dependency] = now
        logger.warning(
            "%s unavailable (%s: %s) in %s; answering 503", dependency, type(exc).__name__, exc, where
        )


class OutageMiddleware:
    """503 JSON for a view that raised because the database or Redis is unreachable."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        dependency = unavailable(exc)
        if dependency is None:
            return None
        warn(dependency, exc, f"{request.path} (answered 503)")
        return response(dependency)


def server_error(request: HttpRequest) -> HttpResponse:
    """`handler500`: the outage answer when the error being handled is an outage, else a 500 in JSON (the
    error is logged by Django before this runs)."""
    exc = sys.exc_info()[1]
    dependency = unavailable(exc)
    if dependency is not None and exc is not None:
        warn(dependency, exc, request.path)
        return response(dependency)
    return JsonResponse({"detail": "internal error"}, status=500)
