"""Reads the lower layers' hooks decide by, kept cheap: "is anyone subscribed to this kind of event?" is
asked on every fire batch, so its answer lives in the shared cache (Redis), not in a query per batch."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from notifications.models import Subscription

#: The event kinds with at least one active subscription, as a sorted list (cache key).
KINDS_KEY = "notifications:subscribed-kinds"


def _read_kinds() -> list[str]:
    return sorted(set(Subscription.objects.filter(active=True).values_list("event", flat=True).distinct()))


def subscribed_kinds() -> frozenset[str]:
    """The kinds anyone listens for. A miss reads the table once and fills the cache with `add` (set only if
    still missing), so a reader that read before a subscription committed cannot overwrite the fresh value
    the writer put there (`refresh_subscribed_kinds`); the TTL bounds any other staleness."""
    cached = cache.get(KINDS_KEY)
    if cached is None:
        cached = _read_kinds()
        cache.add(KINDS_KEY, cached, timeout=settings.SCHEDULER_NOTIFY_CACHE_SECONDS)
    return frozenset(cached)


def refresh_subscribed_kinds() -> None:
    """After a subscription is committed (created, changed, deleted): every process sees it at once."""
    cache.set(KINDS_KEY, _read_kinds(), timeout=settings.SCHEDULER_NOTIFY_CACHE_SECONDS)
