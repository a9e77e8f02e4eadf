"""Trigger querysets: the filters every reader needs, named once."""

from __future__ import annotations

from django.db import models


class TriggerQuerySet(models.QuerySet):
    def live(self) -> TriggerQuerySet:
        """Not deleted. Deleted triggers keep their row so their execution history stays readable."""
        return self.filter(deleted_at__isnull=True)

    def active(self) -> TriggerQuerySet:
        return self.live().filter(status="active")

    def visible_to(self, user) -> TriggerQuerySet:
        """Users see their own triggers; staff see everyone's."""
        qs = self.live()
        return qs if user.is_staff else qs.filter(owner=user)
