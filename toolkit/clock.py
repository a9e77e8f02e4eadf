"""The one clock. Everything that needs "now" calls `clock.now()` (through the module, so tests can freeze
it in one place)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def iso_z(moment: datetime | None) -> str | None:
    """An instant as the earlier systems' clients read it (ISO 8601, `Z` for UTC), or None."""
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
