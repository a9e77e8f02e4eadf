"""The one place that talks to RedBeat and its Redis keys: the beat scheduler the fleet runs
(`celery beat -S schedules.beat.scheduler:TriggerScheduler`), the sync of one trigger after every service
write, the reconcile that repairs Redis from the database, and the beat pass the tick endpoint shares.

Modules, each depending only on those above it:

* `entries`   key names, the entry encoding, reading a chunk of entries (`Observed`, `TriggerEntry`)
* `sync`      the entry the database asks for (`desired_entry`) and its compare-and-set write
* `dispatch`  one beat pass: load due entries, reserve them (compare-and-set), publish what was reserved
* `reconcile` the full rebuild, the changed-since pass and the slow audit in slices
* `scheduler` `TriggerScheduler` (lock, standby, outages), housekeeping tasks and the beat-less tick

Key layout 2 (``<prefix>`` is ``REDBEAT_KEY_PREFIX``, default ``{redbeat}``: the braces are a Redis Cluster
hash tag, so every key below, and so every multi-key script, is in one slot)::

    <prefix>::lock           string  the leader lock: a redis-py Lock token with a TTL of REDBEAT_LOCK_TIMEOUT
    <prefix>:schedule        zset    entry key -> due time in whole unix seconds, ceil(fire_at): never early
    <prefix>:t:<uuid>        hash    one trigger's entry, short field names (a small hash: one listpack)
        d   the id of its definition in <prefix>::defs
        s   next slot, microseconds since the epoch: the slot the beat owes (the nominal instant: the
            run's identity)
        f   fire_at, microseconds: the next slot plus its deterministic jitter (when it becomes due)
        r   rev, integer, +1 on every write made from the database (sync, reconcile)
        c   microseconds: the last missed slot reconcile sent, so each is sent once
    <prefix>::defs           hash    definition id (64 bits of a hash of the text) -> JSON {<ScheduleSpec
                                     fields>, "jitter_seconds": n, "priority": 0|3|6|9}: stored once however
                                     many triggers share it (same expression, zone, jitter and priority).
                                     A one-off's run_at is not in it (its entry's next slot is its run_at),
                                     so one-offs share definitions too
    <prefix>::refs           hash    definition id -> entries referring to it; the write script keeps it
                                     and removes a definition with its last entry
    <prefix>::layout         string  "2"; any other value (or none) makes the leader rebuild every entry,
                                     deleting layout 1's <prefix>:trigger:<uuid> entries first
    <prefix>::stats          hash    counters: fired_<origin>, conflicts, corrupt, quarantined
    <prefix>::reconciled     string  taken (TTL one reconcile period) by a tick endpoint call that reconciles
    <prefix>::built          string  set when a full reconcile completed: its absence (FLUSHDB, a Redis
                                     restarted empty, a first start) is what makes the leader rebuild
    <prefix>::watermark      string  ISO-8601 UTC start of the last completed repair: triggers changed
                                     (updated_at) before it, less an overlap, are known to be in Redis
    <prefix>::housekeeping:<task>  string  taken (TTL its period) by whoever sends that periodic system task

A removed entry (trigger paused, completed, deleted or gone) keeps only ``r`` (rev), as a tombstone that
expires after TOMBSTONE_SECONDS: a revision must never repeat while a beat pass that read the old one may
still be running, or an entry removed and re-created in between could pass its compare-and-set.

Every writer goes through one guard, a Lua compare-and-set on (next_slot, rev) as the writer read them:

* the beat reserves a due slot (advances next_slot, fire_at and the score) only while it holds the lock
  token and the entry is unchanged, and publishes only what it reserved. An edit or delete racing a tick
  changes rev, so the tick publishes nothing for that entry: no slot of an old schedule, no resurrection.
* the tick endpoint reserves the same way, without the lock requirement, so it is safe beside a beat.
* sync and reconcile write what the database says (rev + 1), only if the entry is still what they read
  before reading the database. Two syncs of one trigger racing each other therefore converge on the newer
  row, and a reconcile never overwrites a newer sync with an older row.

The hot path never touches the database. Three repairs keep Redis true to it: the leader's periodic one (on
taking the lock and every SCHEDULER_RECONCILE_SECONDS) reads only the triggers changed since the last
repair's watermark; a slow audit compares everything, a slice at a time within a CPU budget; and a full
reconcile (``manage.py sync_schedules``, or the leader when ``::built`` is gone after FLUSHDB or an empty
restart) rebuilds every entry.

The scripts touch several keys at once (entries, the schedule, the lock), so all of them must live on one
Redis (or, on a cluster, share a hash slot through a ``{...}`` prefix).
"""
