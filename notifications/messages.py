"""What a notification says: one subject and text for email and Slack, and the JSON event for webhooks.
Built once, when the event is routed, and kept on the delivery, so the log shows exactly what was sent."""

from __future__ import annotations

from typing import Any

from executions.policies import SkipReason
from toolkit.events import Event, EventKind


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _reason_label(reason: str) -> str:
    member = SkipReason(reason) if reason in SkipReason.values else None
    return member.label if member is not None else reason


def headline(kind: str, event: Event) -> str:
    if kind == EventKind.FAILURES:
        return f"{_plural(event.failures, 'consecutive failure')}"
    if kind == EventKind.FAILED:
        return "a run timed out" if event.reason == "timed_out" else "a run failed"
    if kind == EventKind.RECOVERED:
        return f"recovered after {_plural(event.failures, 'failure')}"
    if kind == EventKind.AUTO_PAUSED:
        return f"auto-paused ({event.reason})"
    if kind == EventKind.SKIPPED:
        return f"{_plural(event.count, 'slot')} skipped: {_reason_label(event.reason)}"
    if kind == EventKind.MISSED:
        return f"{_plural(event.count, 'missed slot')} recorded"
    return kind


def compose(kind: str, event: Event, *, trigger_name: str, workflow_id: str) -> dict[str, Any]:
    """The delivery's payload: `subject`, `text` and the `event` a webhook receives."""
    title = headline(kind, event)
    subject = " ".join(f"[scheduler] {trigger_name}: {title}".split())  # no newline reaches a header
    lines = [
        subject,
        "",
        f"Trigger: {trigger_name} (workflow {workflow_id}, id {event.trigger_id})",
        f"Event: {EventKind(kind).label}",
        f"At: {event.at}",
    ]
    if event.failures and kind in {EventKind.FAILED, EventKind.FAILURES}:
        lines.append(f"Failures in a row: {event.failures}")
    if event.detail:
        lines.append(f"Error: {event.detail}")
    body = {
        "event": kind,
        "trigger": {"id": event.trigger_id, "name": trigger_name, "workflow_id": workflow_id},
        "at": event.at,
        "reason": event.reason,
        "failures": event.failures,
        "count": event.count,
        "error": event.detail,
        "text": subject,
    }
    return {"subject": subject, "text": "\n".join(lines), "event": body}
