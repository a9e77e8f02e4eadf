"""The one place that talks to RedBeat and its Redis keys.

Key layout (prefix `REDBEAT_KEY_PREFIX`, default `redbeat`):
  <prefix>::lock          the leader lock (a redis-py Lock token), held by the active beat
  <prefix>::schedule      sorted set: entry key -> due time (unix seconds)
  <prefix>:trigger:<id>   hash for one trigger's entry
"""

from __future__ import annotations

from redbeat import RedBeatScheduler


class TriggerScheduler(RedBeatScheduler):
    """Our beat scheduler. `setup_schedule` is a no-op: RedBeat's runs on every beat, standbys included,
    before the lock is taken, and would write entries (even `celery.backend_cleanup`) behind the leader's
    back."""

    def setup_schedule(self) -> None:
        return None
