"""Ids that arrive as text in messages (a forged or corrupted one must be dropped, not crash a batch)."""

from __future__ import annotations

import uuid


def as_uuid(value: object) -> uuid.UUID | None:
    """The UUID `value` names, or None when it names none."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
