"""The launcher interface: how an execution becomes a run somewhere else.

A launcher is chosen by the operator's target configuration (`settings.SCHEDULER_TARGETS[trigger.target]`,
key `kind`); users only name a target, never a URL, a task or a callable. Every launcher does one thing per
call and never touches the database: the launch service records attempts, decides retries and ends runs, so
all launchers share one retry and bookkeeping policy.

* `launch(execution) -> LaunchResult` makes one attempt. A *sync* launcher's answer is the end of the run
  (`SUCCEEDED` or `FAILED`); an *async* one answers `ACCEPTED` with a run id, and the end arrives later by
  the signed callback or by `poll(run_id)`.
* `poll(run_id) -> PollResult` and `cancel(run_id)` are optional (`can_poll()` / `can_cancel()`).

Secrets never leave through results: every error text goes through `scrub()` before it is returned.
"""

from __future__ import annotations

import json
import re
import urllib.error
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.module_loading import import_string

from executions import policies
from executions.usage import Usage, UsageError, parse_usage

if TYPE_CHECKING:
    from executions.models import Execution

#: Launcher classes by `kind`, imported on first use so a worker only loads what its targets need.
KINDS: dict[str, str] = {
    "http": "executions.launchers.http.HttpLauncher",
    "celery": "executions.launchers.celery_task.CeleryTaskLauncher",
    "python": "executions.launchers.python.PythonLauncher",
    "demo": "executions.launchers.demo.DemoLauncher",
}

#: Largest JSON result kept on an execution; bigger ones are replaced by a note (results are for a glance in
#: the history, not a data store).
MAX_RESULT_BYTES = 64 * 1024
MAX_ERROR_CHARS = 2000
#: Config keys whose values are secrets, wherever they appear in a target's configuration.
_SECRET_KEY_PATTERN = re.compile(r"secret|token|password|passwd|authorization|api_?key|credential", re.I)


class LauncherConfigError(Exception):
    """The operator's target configuration cannot launch this trigger (unknown target or kind, missing
    key). Retrying cannot fix it, so the attempt fails at once with this message."""


class LaunchStatus(StrEnum):
    """What one attempt achieved."""

    ACCEPTED = "accepted"  # async target took the run; its end comes by callback or poll
    SUCCEEDED = "succeeded"  # sync target ran it to success; the call was the run
    FAILED = "failed"  # the attempt failed; `retryable` says whether another try can help


@dataclass(frozen=True)
class LaunchResult:
    status: LaunchStatus
    run_id: str = ""
    result: Any = None
    error: str = ""
    retryable: bool = False
    timed_out: bool = False
    http_status: int | None = None
    exception: str = ""
    retry_after: float | None = None  # seconds, from the target's Retry-After
    usage: Usage | None = None  # what a run that ended in the call reported using

    @classmethod
    def accepted(cls, run_id: str) -> LaunchResult:
        return cls(LaunchStatus.ACCEPTED, run_id=run_id)

    @classmethod
    def succeeded(
        cls,
        *,
        run_id: str = "",
        result: Any = None,
        http_status: int | None = None,
        usage: Usage | None = None,
        note: str = "",
    ) -> LaunchResult:
        """A sync run that ended well. `note` (kept on the attempt, not the run) says what of the answer
        was dropped, such as a usage document that could not be stored."""
        return cls(
            LaunchStatus.SUCCEEDED,
            run_id=run_id,
            result=clip_result(result),
            http_status=http_status,
            usage=usage,
            error=scrub(note) if note else "",
        )

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        retryable: bool = False,
        timed_out: bool = False,
        http_status: int | None = None,
        exception: str = "",
        retry_after: float | None = None,
        run_id: str = "",
        usage: Usage | None = None,
    ) -> LaunchResult:
        return cls(
            LaunchStatus.FAILED,
            run_id=run_id,
            error=scrub(error),
            retryable=retryable,
            timed_out=timed_out,
            http_status=http_status,
            exception=exception,
            retry_after=retry_after,
            usage=usage,
        )

    @classmethod
    def from_exception(cls, exc: BaseException) -> LaunchResult:
        """One place turns a raised exception into an attempt outcome, with the retry rules of
        `policies.classify_exception` (timeouts and connection errors retry, anything else fails)."""
        if isinstance(exc, LauncherConfigError):
            return cls.failed(f"target misconfigured: {exc}", exception=type(exc).__name__)
        return cls.failed(
            f"{type(exc).__name__}: {exc}",
            retryable=policies.classify_exception(exc) is policies.Outcome.RETRYABLE,
            timed_out=is_timeout(exc),
            http_status=exc.code if isinstance(exc, urllib.error.HTTPError) else None,
            exception=type(exc).__name__,
        )


class RunState(StrEnum):
    """A polled run's state, in our vocabulary (launchers translate the target's words)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class PollResult:
    state: RunState
    result: Any = None
    error: str = ""
    usage: Usage | None = None

    @property
    def finished(self) -> bool:
        return self.state is not RunState.RUNNING


@dataclass(frozen=True)
class LaunchPayload:
    """What every target is told about a run: the same facts, spelled for HTTP (camelCase JSON) or for Python
    (snake_case keyword arguments)."""

    execution_id: str
    trigger_id: str
    workflow_id: str
    scheduled_at: str
    attempt: int
    input: Any = field(default_factory=dict)
    metadata: Any = field(default_factory=dict)

    @classmethod
    def of(cls, execution: Execution) -> LaunchPayload:
        trigger = execution.trigger
        when = execution.slot or execution.requested_at or execution.created_at
        return cls(
            execution_id=str(execution.pk),
            trigger_id=str(trigger.pk),
            workflow_id=trigger.workflow_id,
            scheduled_at=iso(when),
            attempt=execution.attempts,
            input=execution.input,
            metadata=trigger.metadata,
        )

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "trigger_id": self.trigger_id,
            "workflow_id": self.workflow_id,
            "scheduled_at": self.scheduled_at,
            "attempt": self.attempt,
            "input": self.input,
            "metadata": self.metadata,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "executionId": self.execution_id,
            "triggerId": self.trigger_id,
            "workflowId": self.workflow_id,
            "scheduledAt": self.scheduled_at,
            "attempt": self.attempt,
            "input": self.input,
            "metadata": self.metadata,
        }


class Launcher:
    """Base class. Subclasses set `kind` and implement `launch`; `poll` and `cancel` when they can."""

    kind: ClassVar[str] = ""
    #: Whether several of its calls may be made at once from threads a batch starts: true only for a
    #: launcher whose call touches no database connection (a thread's connection would outlive it).
    batchable: ClassVar[bool] = False
    #: Upper bound of one call when the target does not set `max_timeout` (seconds).
    default_max_timeout: ClassVar[float] = 300.0

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        self.name = name
        self.config = config

    def launch(self, execution: Execution) -> LaunchResult:
        raise NotImplementedError

    def can_poll(self) -> bool:
        return False

    def can_cancel(self) -> bool:
        return False

    def poll(self, run_id: str) -> PollResult:
        raise NotImplementedError(f"{self.kind} launcher cannot poll")

    def cancel(self, run_id: str) -> None:
        raise NotImplementedError(f"{self.kind} launcher cannot cancel")

    @property
    def is_async(self) -> bool:
        return self.config.get("mode", "sync") == "async"

    def call_timeout(self, execution: Execution) -> float:
        """Seconds one attempt may take: the trigger's timeout, bounded by the target's `max_timeout` and
        kept below the broker's visibility timeout, so a live worker ends (and acks) its call before the
        broker would hand the same message to another worker. The launch service derives the attempt's
        deadline from this, so it is computed in this one place."""
        bound = float(self.config.get("max_timeout", self.default_max_timeout))
        below_visibility = max(1.0, settings.BROKER_VISIBILITY_TIMEOUT * 0.9)
        return max(0.1, min(float(execution.trigger.timeout_seconds), bound, below_visibility))

    def require(self, key: str) -> Any:
        value = self.config.get(key)
        if value in (None, ""):
            raise LauncherConfigError(f"target {self.name!r} ({self.kind}) needs {key!r}")
        return value


def get_launcher(target: str) -> Launcher:
    """The launcher for a target name, built from the operator's configuration."""
    config = settings.SCHEDULER_TARGETS.get(target)
    if not isinstance(config, Mapping):
        raise LauncherConfigError(f"unknown target {target!r}")
    kind = config.get("kind")
    if kind not in KINDS:
        raise LauncherConfigError(f"target {target!r} has unknown kind {kind!r}; known: {', '.join(KINDS)}")
    cls: type[Launcher] = import_string(KINDS[kind])
    return cls(target, config)


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, TimeoutError):
        return True
    return isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError)


def reported_usage(document: Any) -> tuple[Usage | None, str]:
    """The usage a target's answer reports (`{"usage": {...}}` at the top of a JSON object, see
    `executions.usage`) and, when that document cannot be stored, a note saying why. A bad usage document
    never changes how the run ended: the target said how its run went, only the accounting is lost."""
    if not isinstance(document, Mapping) or document.get("usage") is None:
        return None, ""
    try:
        return parse_usage(document["usage"]), ""
    except UsageError as exc:
        return None, f"usage ignored: {exc}"


def clip_result(value: Any) -> Any:
    """Keep a result only if it is JSON and small; otherwise keep a note saying why it is missing."""
    if value is None:
        return None
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return {"note": "result was not JSON-serialisable", "repr": scrub(repr(value))[:500]}
    if len(encoded.encode()) > MAX_RESULT_BYTES:
        return {"note": f"result larger than {MAX_RESULT_BYTES // 1024} KiB was dropped"}
    return value


def _config_secrets(value: Any, key: str = "") -> Iterable[str]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _config_secrets(v, str(k))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _config_secrets(item, key)
    elif isinstance(value, str):
        if _SECRET_KEY_PATTERN.search(key):
            yield value
        if "://" in value:
            password = urlsplit(value).password
            if password:
                yield password


def secrets_to_scrub() -> list[str]:
    """Every secret an error text could echo: the internal secrets, and secret-looking values and URL
    passwords in the target configuration. Longest first, so a secret containing another is replaced whole."""
    found = {settings.INTERNAL_API_SECRET, settings.CRON_SECRET, settings.SECRET_KEY}
    found.update(_config_secrets(settings.SCHEDULER_TARGETS))
    return sorted((s for s in found if s and len(s) >= 4), key=len, reverse=True)


def scrub(text: str) -> str:
    """`text` with every known secret replaced by `***`, cut to a readable length."""
    for secret in secrets_to_scrub():
        text = text.replace(secret, "***")
    text = re.sub(r"(?i)(bearer\s+)\S+", r"\1***", text)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"
