"""Python targets: call an allow-listed function in the worker.

    {"kind": "python", "callable": "reports.flows.nightly"}          # one fixed function, or
    {"kind": "python", "callables": ["reports.flows.nightly", ...]}  # the trigger's workflow_id picks one

Only operators decide what runs: the dotted path comes from the target configuration, or is the trigger's
`workflow_id` *and* appears in that target's `callables` or in `settings.SCHEDULER_PYTHON_CALLABLES`. A user
can never name an arbitrary import path. The function receives one argument, the payload as a dict of
snake_case keys (`execution_id`, `trigger_id`, `workflow_id`, `scheduled_at`, `attempt`, `input`,
`metadata`), and its return value (JSON) becomes the result; a `usage` key in a returned object is what
the run used (`executions.usage`). Synchronous: the call is the run. An exception
fails the attempt, and retries when `policies.classify_exception` says it may help (timeouts, connection
errors).

Python cannot interrupt a function, so the call runs in a thread the attempt waits on for the call timeout.
Past it the run ends `timed_out` and is *not* retried: the first call may still be running, and a retry
would run the workflow twice at once. The thread is left to finish on its own (its database connections
are closed when it does). Keeping the wait in the attempt, rather than letting it hang, is also what keeps
the attempt's deadline true: a worker past it really is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections
from django.utils.module_loading import import_string

from executions.launchers.base import (
    Launcher,
    LauncherConfigError,
    LaunchPayload,
    LaunchResult,
    reported_usage,
)

if TYPE_CHECKING:
    from executions.models import Execution


def _dotted(path: str) -> str:
    """Accept `pkg.mod:func` as well as `pkg.mod.func` (import_string wants the latter)."""
    return path.replace(":", ".")


class PythonLauncher(Launcher):
    kind = "python"

    def resolve(self, workflow_id: str) -> Callable[[dict[str, Any]], Any]:
        path = self.config.get("callable")
        if not path:
            allowed = set(self.config.get("callables", ())) | set(
                getattr(settings, "SCHEDULER_PYTHON_CALLABLES", ())
            )
            if workflow_id not in allowed:
                raise LauncherConfigError(f"{workflow_id!r} is not an allow-listed callable of {self.name!r}")
            path = workflow_id
        try:
            function = import_string(_dotted(str(path)))
        except ImportError as exc:
            raise LauncherConfigError(f"cannot import {path!r}: {exc}") from None
        if not callable(function):
            raise LauncherConfigError(f"{path!r} is not callable")
        return function

    def launch(self, execution: Execution) -> LaunchResult:
        payload = LaunchPayload.of(execution)
        function = self.resolve(payload.workflow_id)
        timeout = self.call_timeout(execution)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["value"] = function(payload.as_kwargs())
            except BaseException as exc:  # handed to the attempt, which classifies it
                outcome["error"] = exc
            finally:
                connections.close_all()  # this thread's connections only

        thread = threading.Thread(target=call, name=f"python-target-{payload.execution_id}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            return LaunchResult.failed(
                f"{self.name!r} did not return within {timeout:g} s; left running, not retried",
                timed_out=True,
            )
        if "error" in outcome:
            raise outcome["error"]
        run_id = f"python-{payload.execution_id}-{payload.attempt}"
        usage, note = reported_usage(outcome.get("value"))
        return LaunchResult.succeeded(run_id=run_id, result=outcome.get("value"), usage=usage, note=note)
