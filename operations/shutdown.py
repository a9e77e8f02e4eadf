"""Graceful shutdown of workers: SIGTERM lets running launches finish for up to a grace, then what is still
running is cancelled and its message goes back to the queue for another worker.

Why not Celery's own knobs alone (read in celery 5.7's `apps/worker.py` and `worker/worker.py`):

* SIGTERM is Celery's *warm* shutdown: stop consuming, wait for running tasks — without any limit. A
  launch stuck on a slow target would hold the worker (and a deploy) until the orchestrator's SIGKILL, and
  a SIGKILLed worker's message comes back only after the broker's visibility timeout (an hour in
  production).
* `worker_soft_shutdown_timeout` only applies to the *cold* shutdown (SIGQUIT, or SIGTERM with
  `REMAP_SIGTERM=SIGQUIT`), and it is a plain `sleep(timeout)` inside the main process's signal handler:
  the worker sleeps out the whole grace even when its tasks end in a second (measured: a 2 s task under a
  5 s soft timeout kept the worker up 7 s, against 4.6 s here), and with the event loop blocked meanwhile.

So SIGTERM stays a warm shutdown (the worker exits as soon as its tasks end) and this module bounds it: the
`worker_shutting_down` signal starts a timer, and when the grace is over the worker sends itself SIGQUIT,
Celery's cold shutdown, which cancels the tasks still running (acks_late: unacknowledged) so kombu hands
their messages back to the queue at once. Messages prefetched but not started are unacknowledged too and
are restored when the worker closes its channel. A redelivered launch finds its attempt in flight and
retires it as lost once that attempt's deadline has passed (see `executions.services`), with the same
idempotency key.

Send SIGTERM to the worker's main process only — `docker stop` and Kubernetes do. Celery's pool children
reset SIGTERM to its default, so a signal sent to the whole process group (systemd's default
`KillMode=control-group`; use `KillMode=mixed`) kills running launches at once. Beat needs nothing here:
RedBeat's `close()`, which `celery beat` calls on SIGTERM, releases the leader lock, so a standby takes over
within one loop interval (proven by `tests/e2e/test_ops_shutdown.py`).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from celery.signals import worker_shutting_down
from django.conf import settings

logger = logging.getLogger(__name__)

_escalation_started = threading.Event()


def install() -> None:
    """Connect the grace timer to Celery's shutdown signal (called once, from `scheduler_project.celery`)."""
    worker_shutting_down.connect(on_worker_shutting_down, weak=False, dispatch_uid="scheduler-shutdown-grace")


def on_worker_shutting_down(sig: str = "", how: str = "", **kwargs: Any) -> None:
    """Start the grace timer on the first warm shutdown. Runs inside the signal handler of the main process,
    so it only starts a daemon thread: the worker exits without waiting for it if its tasks end first."""
    grace = float(settings.WORKER_SHUTDOWN_GRACE_SECONDS)
    if how != "Warm" or grace <= 0 or _escalation_started.is_set():
        return
    _escalation_started.set()
    threading.Thread(target=_cancel_after, args=(grace,), name="shutdown-grace", daemon=True).start()


def _cancel_after(grace: float) -> None:
    threading.Event().wait(grace)
    logger.warning(
        "worker: shutdown grace of %gs is over; cancelling the tasks still running (their messages go back "
        "to the queue)",
        grace,
    )
    os.kill(os.getpid(), signal.SIGQUIT)
