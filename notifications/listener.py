"""The listener `notifications.apps` registers with `toolkit.events`: it says which kinds are wanted (from
the cached subscribed kinds) and, after the emitter's commit, sends the events to the `notifications.route`
task — the grouped read of subscriptions happens there, off the fire and launch paths."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from notifications import selectors
from toolkit.events import Event, EventKind

logger = logging.getLogger(__name__)

ROUTE_TASK = "notifications.route"


class Listener:
    def wanted(self) -> frozenset[str]:
        kinds = selectors.subscribed_kinds()
        if EventKind.FAILURES in kinds:
            kinds = kinds | {EventKind.FAILED}  # a streak is judged on each failed run
        return kinds

    def __call__(self, events: Sequence[Event]) -> None:
        from celery import current_app as app

        app.signature(ROUTE_TASK, args=[[event.as_dict() for event in events]]).apply_async()

    def __repr__(self) -> str:
        return "notifications.listener"


LISTENER = Listener()
