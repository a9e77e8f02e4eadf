"""HTTP targets: POST the run to an operator-configured URL.

    {"kind": "http",
     "url": "https://runner.internal/workflows/{workflow_id}/runs",   # workflow_id is url-quoted in
     "mode": "sync" | "async",                                        # sync: the answer is the run's end
     "max_timeout": 300,                                              # bound on the trigger's timeout
     "poll_url": "https://runner.internal/runs/{run_id}",             # optional, async: GET for the state
     "cancel_url": "https://runner.internal/runs/{run_id}/cancel"}    # optional: POST to stop a run

A sync answer (and a poll answer that ends the run) may report what the run used beside its result:
`{"status": "succeeded", "result": {...}, "usage": {"credits": 3, "inputTokens": 1200}}` (see
`executions.usage`); an async target reports it in its completion callback.

Every request carries `Authorization: Bearer $INTERNAL_API_SECRET`, `X-Scheduler-Signature` (see
`executions.signing`) and, for launches, `Idempotency-Key: <execution id>` — the same key on every attempt
and every redelivery, so a target that honours it starts one run per execution whatever we retry.

Why stdlib `urllib` and not httpx: the launcher sends one small JSON POST with a timeout and reads a small
JSON answer; urllib does that with no new dependency, and `policies.classify_exception` already knows its
errors. Two defaults are turned off on purpose: redirects are not followed (a 3xx means a misconfigured
target, and urllib would turn a redirected POST into a GET), and environment proxies are ignored (targets
are internal, and a proxy would see the bearer secret).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from django.conf import settings

from executions import policies, signing
from executions.launchers.base import (
    Launcher,
    LauncherConfigError,
    LaunchPayload,
    LaunchResult,
    PollResult,
    RunState,
    reported_usage,
    scrub,
)
from toolkit import clock

if TYPE_CHECKING:
    from email.message import Message

    from executions.models import Execution

logger = logging.getLogger(__name__)

#: Answers longer than this are cut: a launch answer is a run id and a small result, not a payload.
MAX_RESPONSE_BYTES = 1024 * 1024
USER_AGENT = "workflow-scheduler/1"
#: How a target may spell a run's state in a poll answer or a sync answer.
STATE_WORDS: dict[str, RunState] = {
    "succeeded": RunState.SUCCEEDED,
    "success": RunState.SUCCEEDED,
    "completed": RunState.SUCCEEDED,
    "done": RunState.SUCCEEDED,
    "failed": RunState.FAILED,
    "failure": RunState.FAILED,
    "error": RunState.FAILED,
    "cancelled": RunState.CANCELLED,
    "canceled": RunState.CANCELLED,
}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx, which classify_http_status calls fatal


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str] | Message  # an HTTPError's headers are an email Message, not a Mapping
    body: bytes

    def document(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def snippet(self) -> str:
        return self.body[:300].decode("utf-8", errors="replace").strip()


def run_id_of(document: Any) -> str:
    """A target may call its run id `runId`, `run_id` or `id`."""
    if isinstance(document, Mapping):
        for key in ("runId", "run_id", "id"):
            value = document.get(key)
            if value not in (None, ""):
                return str(value)[:200]
    return ""


def state_of(document: Any) -> RunState | None:
    if isinstance(document, Mapping) and isinstance(document.get("status"), str):
        return STATE_WORDS.get(document["status"].strip().lower(), RunState.RUNNING)
    return None


class HttpLauncher(Launcher):
    kind = "http"
    batchable = True

    def launch(self, execution: Execution) -> LaunchResult:
        payload = LaunchPayload.of(execution)
        body = json.dumps(payload.as_json(), separators=(",", ":"), allow_nan=False).encode()
        url = self._url("url", workflow_id=payload.workflow_id)
        response = self._exchange(
            "POST", url, body, timeout=self.call_timeout(execution), idempotency_key=payload.execution_id
        )
        document = response.document()
        run_id = run_id_of(document)
        outcome = policies.classify_http_status(response.status)
        if outcome is not policies.Outcome.SUCCESS:
            return LaunchResult.failed(
                f"HTTP {response.status} from target {self.name!r}: {response.snippet()}",
                retryable=outcome is policies.Outcome.RETRYABLE,
                http_status=response.status,
                retry_after=policies.parse_retry_after(response.headers.get("Retry-After"), now=clock.now()),
                run_id=run_id,
            )
        if self.is_async:
            return LaunchResult.accepted(run_id)
        usage, note = reported_usage(document)
        if state_of(document) in (RunState.FAILED, RunState.CANCELLED):
            error = document.get("error") or f"target {self.name!r} reported the run {document['status']}"
            return LaunchResult.failed(str(error), http_status=response.status, run_id=run_id, usage=usage)
        result = document.get("result", document) if isinstance(document, Mapping) else document
        return LaunchResult.succeeded(
            run_id=run_id, result=result, http_status=response.status, usage=usage, note=note
        )

    def can_poll(self) -> bool:
        return bool(self.config.get("poll_url"))

    def can_cancel(self) -> bool:
        return bool(self.config.get("cancel_url"))

    def poll(self, run_id: str) -> PollResult:
        response = self._exchange("GET", self._url("poll_url", run_id=run_id), None, timeout=self._short())
        if response.status in (404, 410):
            return PollResult(RunState.FAILED, error=f"target {self.name!r} does not know run {run_id!r}")
        if not 200 <= response.status <= 299:
            raise RuntimeError(scrub(f"poll of {self.name!r} answered HTTP {response.status}"))
        document = response.document()
        state = state_of(document) or RunState.RUNNING
        result = document.get("result") if isinstance(document, Mapping) else None
        error = str(document.get("error") or "") if isinstance(document, Mapping) else ""
        usage, note = reported_usage(document) if state is not RunState.RUNNING else (None, "")
        if note:
            logger.warning("poll of run %s at %s: %s", run_id, self.name, note)
        return PollResult(state, result=result, error=scrub(error), usage=usage)

    def cancel(self, run_id: str) -> None:
        url = self._url("cancel_url", run_id=run_id)
        response = self._exchange("POST", url, b"{}", timeout=self._short(), idempotency_key=None)
        if not 200 <= response.status <= 299 and response.status != 404:
            raise RuntimeError(scrub(f"cancel at {self.name!r} answered HTTP {response.status}"))

    # --- plumbing ---------------------------------------------------------------------------------------

    def _short(self) -> float:
        """Polls and cancels are bookkeeping calls: a few seconds, never the run's own timeout."""
        return min(10.0, float(self.config.get("max_timeout", self.default_max_timeout)))

    def _url(self, key: str, **values: str) -> str:
        template = str(self.require(key))
        try:
            url = template.format(**{k: quote(v, safe="") for k, v in values.items()})
        except (KeyError, IndexError, ValueError) as exc:
            raise LauncherConfigError(f"target {self.name!r}: bad {key} template ({exc})") from None
        if urlsplit(url).scheme not in ("http", "https"):
            raise LauncherConfigError(f"target {self.name!r}: {key} must be an http(s) URL")
        return url

    def _exchange(
        self, method: str, url: str, body: bytes | None, *, timeout: float, idempotency_key: str | None = None
    ) -> _Response:
        """One request. Non-2xx answers are returned, not raised, so their status and Retry-After are read
        in one place; transport failures (timeouts, refused connections) raise for the caller to classify."""
        secret = settings.INTERNAL_API_SECRET
        if not secret:
            raise LauncherConfigError("INTERNAL_API_SECRET is not set; HTTP targets need it to sign requests")
        signed = body if body is not None else b""
        headers = {
            "Authorization": f"Bearer {secret}",
            signing.HEADER: signing.sign(signed, secret=secret, now=clock.now()),
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - scheme checked in _url
        try:
            with _OPENER.open(request, timeout=timeout) as answer:
                return _Response(answer.status, answer.headers, answer.read(MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as exc:
            with exc:
                return _Response(exc.code, exc.headers or {}, exc.read(MAX_RESPONSE_BYTES))
