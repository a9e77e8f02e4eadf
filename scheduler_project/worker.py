"""The worker's consumer (`worker_consumer`, Celery's own extension point), for one fault of Celery 5.7 with
the Redis transport.

When the broker connection drops under a worker with an event loop (prefork), Celery 5.7's
`on_connection_error_after_connected` `collect()`s the broken connection, which dismantles its transport,
before closing it. Two things then raise `AttributeError` (not one of the transport's connection errors, so
nothing ignores it) and the worker exits with "Unrecoverable error": closing the Redis channel (it restores
its unacknowledged messages through the dismantled transport), and, after the reconnect, acknowledging a
task that was running across the outage (its message belongs to the old channel). A Redis restart took
every prefork worker down with it (found by the fault drills, tests/faults).

Here the broken connection is closed without `collect()`: its sockets bounded first (as Celery does), its
close errors ignored. The old channel keeps a usable transport, so a late acknowledgement reaches the new
Redis (or fails as a connection error, which Celery logs and survives). Remove when Celery's own
`collect()`-then-close stops raising."""

from __future__ import annotations

import logging
from typing import Any

from celery.utils.threads import bound_open_broker_sockets  # type: ignore[attr-defined]
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.consumer import (  # type: ignore[attr-defined]
    COLLECT_SOCKET_TIMEOUT,
    CONNECTION_RETRY,
)
from kombu.common import ignore_errors

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    def on_connection_error_after_connected(self, exc: Any) -> None:
        logger.warning("%s (%r)", CONNECTION_RETRY, exc)
        connection, self.connection = self.connection, None
        if connection is None:
            return
        bound_open_broker_sockets(connection, COLLECT_SOCKET_TIMEOUT)
        try:
            ignore_errors(connection, connection.close)
        except Exception as error:  # whatever a dead connection raises while closing, it is dropped
            logger.warning("consumer: the lost broker connection did not close cleanly (%r)", error)
