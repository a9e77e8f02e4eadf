"""`POST /api/v1/executions/{id}/complete`: how an asynchronous target reports a run's end.

A plain Django view, outside DRF's authentication: the caller is a target, not a user, and proves itself
with `X-Scheduler-Signature` (HMAC of the raw body with `INTERNAL_API_SECRET`, timestamp within 5 minutes;
see `executions.signing`). The order of checks is deliberate: the signature first (403, so an unsigned
caller learns nothing, not even whether an id exists), then the id (404), then the body (400 naming the
field, e.g. `{"usage.inputTokens": ["must be a non-negative whole number"]}`). The body:
`{"status": "succeeded"|"failed"|"cancelled", "result"?, "error"?, "runId"?, "usage"?: {"credits",
"inputTokens", "outputTokens", "cost"}}` (usage: `executions.usage`). Answers:

* 200 — recorded, or the run already had exactly this end (a retried callback changes nothing);
* 409 — the run already ended differently (we timed it out or cancelled it first); nothing changes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from executions import services, signing
from executions.models import Execution, ExecutionStatus
from executions.usage import UsageError, parse_usage
from toolkit import clock

#: The ends a target may report (timing out is the scheduler's own decision).
REPORTABLE = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED)
MAX_ERROR_CHARS = 10_000


class BodyError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_completion(body: bytes) -> dict[str, Any]:
    """The callback body as keyword arguments of `execution_complete`, or `BodyError` naming the field."""
    try:
        document = json.loads(body or b"")
    except ValueError:
        raise BodyError("body", "must be a JSON object") from None
    if not isinstance(document, dict):
        raise BodyError("body", "must be a JSON object")
    status = document.get("status")
    if status not in REPORTABLE:
        raise BodyError("status", f"must be one of: {', '.join(REPORTABLE)}")
    error = document.get("error", "")
    if error is None:
        error = ""
    if not isinstance(error, str) or len(error) > MAX_ERROR_CHARS or "\x00" in error:
        raise BodyError("error", f"must be text of at most {MAX_ERROR_CHARS} characters")
    run_id = document.get("runId", "")
    if run_id is None:
        run_id = ""
    if not isinstance(run_id, str | int) or isinstance(run_id, bool) or len(str(run_id)) > 200:
        raise BodyError("runId", "must be a string of at most 200 characters")
    try:
        usage = parse_usage(document.get("usage"))
    except UsageError as exc:
        raise BodyError(exc.field, exc.message) from None
    return {
        "status": status,
        "result": document.get("result"),
        "error": error,
        "run_id": str(run_id),
        "usage": usage,
    }


@csrf_exempt
@require_POST
def complete_view(request: HttpRequest, execution_id: uuid.UUID) -> JsonResponse:
    body = request.body
    try:
        signing.verify(
            request.headers.get(signing.HEADER), body, secret=settings.INTERNAL_API_SECRET, now=clock.now()
        )
    except signing.SignatureError as exc:
        return JsonResponse({"detail": str(exc)}, status=403)
    execution = Execution.objects.filter(pk=execution_id).first()
    if execution is None:
        return JsonResponse({"detail": "no such execution"}, status=404)
    try:
        fields = parse_completion(body)
    except BodyError as exc:
        return JsonResponse({exc.field: [exc.message]}, status=400)
    try:
        execution = services.execution_complete(execution=execution, **fields)
    except services.ExecutionConflict as exc:
        return JsonResponse({"detail": str(exc), "status": exc.status}, status=409)
    return JsonResponse({"id": str(execution.pk), "status": execution.status})
