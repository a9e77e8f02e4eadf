"""A local HTTP target for launcher tests: a `http.server` in a thread on 127.0.0.1, scripted per workflow,
recording every request and checking its signature with its own HMAC (not the scheduler's code, so a bug in
`executions.signing` cannot hide itself). Used by the integration and e2e launch tests; the tests at the
bottom check the stub itself.

Routes (what an operator's workflow runner would expose):
  POST /workflows/<workflow_id>/runs   start a run; answered from the workflow's script
  GET  /runs/<run_id>                  poll: {"status": ...} from `run_states` (default running)
  POST /runs/<run_id>/cancel           cancel: recorded, and the run's state becomes cancelled
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

import pytest

from tests.support.procs import free_port

pytestmark = pytest.mark.integration

SECRET = "test-internal-secret-0123456789"  # tests/envdefaults.py sets INTERNAL_API_SECRET to this


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON document; None -> {"runId": "run-<n>"}
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    hold: threading.Event | None = None  # answer only once set (or give up after `hold_limit`)


@dataclass
class Seen:
    method: str
    path: str
    workflow_id: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived
    signature_ok: bool

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


def signature_ok(header: str | None, body: bytes, secret: str = SECRET, tolerance: float = 300) -> bool:
    """Recompute the scheduler's signature independently: t=<unix>,v1=<hex HMAC-SHA256(secret, t.body)>."""
    if not header:
        return False
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in parts or "v1" not in parts or abs(time.time() - int(parts["t"])) > tolerance:
        return False
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


class StubTarget:
    def __init__(self, hold_limit: float = 60.0) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.hold_limit = hold_limit
        self.lock = threading.Lock()
        self.scripts: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self.run_states: dict[str, dict[str, Any]] = {}
        self.counter = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                stub._handle(self, "GET")

            def do_POST(self) -> None:
                stub._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # --- configuration ----------------------------------------------------------------------------------

    def target(self, mode: str = "sync", **extra: Any) -> dict[str, Any]:
        """A SCHEDULER_TARGETS entry pointing at this stub."""
        return {
            "kind": "http",
            "url": f"{self.base}/workflows/{{workflow_id}}/runs",
            "mode": mode,
            "poll_url": f"{self.base}/runs/{{run_id}}",
            "cancel_url": f"{self.base}/runs/{{run_id}}/cancel",
            **extra,
        }

    def script(self, workflow_id: str, replies: list[Reply]) -> None:
        with self.lock:
            self.scripts[workflow_id] = list(replies)

    def seen(self, workflow_id: str | None = None, method: str = "POST", suffix: str = "/runs") -> list[Seen]:
        with self.lock:
            return [
                r
                for r in self.requests
                if r.method == method
                and r.path.endswith(suffix)
                and (workflow_id is None or r.workflow_id == workflow_id)
            ]

    def cancels(self) -> list[str]:
        return [r.path.split("/")[2] for r in self.seen(suffix="/cancel")]

    # --- serving ----------------------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        parts = request.path.strip("/").split("/")
        workflow_id = unquote(parts[1]) if len(parts) == 3 and parts[0] == "workflows" else ""
        seen = Seen(
            method=method,
            path=request.path,
            workflow_id=workflow_id,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            at=time.monotonic(),
            signature_ok=signature_ok(request.headers.get("X-Scheduler-Signature"), body),
        )
        with self.lock:
            self.requests.append(seen)
            self.counter += 1
            number = self.counter
            script = self.scripts.get(workflow_id)
            reply = script.pop(0) if workflow_id and script else Reply()
        if parts[0] == "runs" and method == "GET":
            reply = Reply(body=self.run_states.get(parts[1], {"status": "running"}))
        elif parts[0] == "runs" and method == "POST":
            self.run_states[parts[1]] = {"status": "cancelled"}
            reply = Reply(body={"ok": True})
        if reply.hold is not None:
            reply.hold.wait(self.hold_limit)
        if reply.delay:
            time.sleep(reply.delay)
        document = reply.body if reply.body is not None else {"runId": f"run-{number}"}
        payload = json.dumps(document).encode()
        with contextlib.suppress(OSError):  # the client may have gone (timed out, killed)
            request.send_response(reply.status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(payload)

    def __enter__(self) -> StubTarget:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubTarget]:
    with StubTarget(hold_limit=10) as target:
        yield target


# --- the stub's own checks ------------------------------------------------------------------------------


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_stub_checks_signatures_with_its_own_hmac(stub: StubTarget) -> None:
    body = b'{"x":1}'
    t = str(int(time.time()))
    good = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    _post(f"{stub.base}/workflows/wf/runs", body, {"X-Scheduler-Signature": f"t={t},v1={good}"})
    _post(f"{stub.base}/workflows/wf/runs", body, {"X-Scheduler-Signature": f"t={t},v1={'0' * 64}"})
    _post(f"{stub.base}/workflows/wf/runs", body, {})
    assert [r.signature_ok for r in stub.seen("wf")] == [True, False, False]


def test_stub_answers_from_the_script_then_defaults(stub: StubTarget) -> None:
    stub.script("wf", [Reply(503), Reply(400)])
    codes = [_post(f"{stub.base}/workflows/wf/runs", b"{}", {}) for _ in range(3)]
    assert codes == [503, 400, 200]
