"""Reads of triggers for the operators' surfaces (the CLI). Services change triggers; these only read."""

from __future__ import annotations

import uuid

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from schedules.models import Trigger, TriggerStatus


def trigger_list(*, owner: str | None = None, paused: bool | None = None) -> QuerySet[Trigger]:
    """Live triggers by name, optionally of one owner (a username) and only paused or only unpaused ones."""
    rows = Trigger.objects.live().select_related("owner").order_by("name", "pk")
    if owner is not None:
        rows = rows.filter(owner__username=owner)
    if paused is not None:
        rows = (
            rows.filter(status=TriggerStatus.PAUSED) if paused else rows.exclude(status=TriggerStatus.PAUSED)
        )
    return rows


def trigger_find(*, ref: str) -> Trigger:
    """A live trigger by id, or by its name when that names exactly one. An operator types what the list
    shows; a name two triggers share is refused with their ids rather than guessed."""
    live = Trigger.objects.live().select_related("owner")
    try:
        pk = uuid.UUID(ref)
    except ValueError:
        pk = None
    if pk is not None:
        found = live.filter(pk=pk).first()
        if found is None:
            raise ValidationError({"trigger": [f"no trigger with id {ref}"]})
        return found
    named = list(live.filter(name=ref)[:5])
    if not named:
        raise ValidationError({"trigger": [f"no trigger named {ref!r}"]})
    if len(named) > 1:
        ids = ", ".join(str(t.pk) for t in named)
        raise ValidationError({"trigger": [f"{len(named)} triggers are named {ref!r}; use an id: {ids}"]})
    return named[0]
