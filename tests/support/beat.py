"""Beat entries for tests: read one in words, or write one by hand past the scripts (to corrupt it)."""

from __future__ import annotations

from typing import Any

import redis

from schedules.beat.entries import DEFINITION, FIRE_AT, NEXT_SLOT, Keys, celery_app, describe, redis_client


def entry_of(keys: Keys, key: str) -> dict[str, Any]:
    """The entry in words: ISO instants, rev, the text of its definition (see `entries.describe`), read
    through the beat's own client."""
    return describe(redis_client(celery_app()), keys, key)


def write_raw(
    client: redis.Redis, keys: Keys, key: str, *, definition: str, next_slot: str = "x", fire_at: str = "1"
) -> None:
    """An entry written by hand: its definition stored under an id of its own, and the entry's fields as
    given, with no compare-and-set and no reference count."""
    ref = f"raw:{key}"
    client.hset(keys.definitions, ref, definition)
    client.hset(key, mapping={DEFINITION: ref, NEXT_SLOT: next_slot, FIRE_AT: fire_at})
