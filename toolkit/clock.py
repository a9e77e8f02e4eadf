"""The one clock. Everything that needs "now" calls `clock.now()` (through the module, so tests can freeze
it in one place)."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
