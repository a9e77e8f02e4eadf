"""`POST /api/v1/tick`: one beat pass for hosts without a long-lived beat (serverless, cron-as-a-service).

A plain Django view, outside DRF and its authentication: the caller is a scheduler service holding one shared
secret, not a user. The endpoint does not exist (404) unless CRON_SECRET is set, answers 405 to anything but
POST, and 401 to a missing or wrong bearer secret (compared in constant time). It is safe beside a running
beat and against itself: see `schedules.beat.scheduler.run_tick`."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from schedules.beat.scheduler import run_tick


def _bearer(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def refuse_without_secret(
    request: HttpRequest, *, methods: tuple[str, ...], realm: str, message: dict[str, str]
) -> JsonResponse | HttpResponseNotAllowed | None:
    """The answer to a call that may not go through (404 while CRON_SECRET is unset, 405 for another
    method, 401 `message` for a missing or wrong bearer secret, compared in constant time), else None.
    Every endpoint a cron service calls with the shared secret is guarded by this one check."""
    secret = settings.CRON_SECRET
    if not secret:
        return JsonResponse({"detail": "Not found."}, status=404)
    if request.method not in methods:
        return HttpResponseNotAllowed(list(methods))
    token = _bearer(request)
    if token is None or not hmac.compare_digest(token.encode(), secret.encode()):
        response = JsonResponse(message, status=401)
        response["WWW-Authenticate"] = f'Bearer realm="{realm}"'
        return response
    return None


@csrf_exempt
def tick_view(request: HttpRequest) -> JsonResponse | HttpResponseNotAllowed:
    refused = refuse_without_secret(
        request, methods=("POST",), realm="tick", message={"detail": "A valid bearer secret is required."}
    )
    return refused or JsonResponse(run_tick())
