"""The beat scheduler the fleet runs, the fleet's own periodic tasks, and the beat-less tick that shares the
beat's pass.
"""

from __future__ import annotations

import logging
import math
import time
from datetime import timedelta
from typing import Any

import redis
from celery import Celery
from celery.signals import beat_init
from django.conf import settings
from django.db import close_old_connections
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
    acquire_distributed_beat_lock,
)
from redis.exceptions import LockNotOwnedError

from schedules.beat.dispatch import OUTAGE_ERRORS, BeatPass, LockLost, Once
from schedules.beat.entries import (
    LAYOUT,
    Keys,
    TriggerEntry,
    celery_app,
    parse_instant,
    redis_client,
)
from schedules.beat.reconcile import Audit, ReconcileReport, reconcile, reconcile_changed

# The pure policy module (no Django, no Celery) is the one table of broker priorities for fires and launches.
from toolkit import clock, metrics

logger = logging.getLogger(__name__)

AUDIT_SLACK_SECONDS = 0.25
#: How long after a held lock's expiry a standby tries it: a lock that expires is taken within this, not
#: within a loop interval.
STANDBY_MARGIN_SECONDS = 0.005


# --------------------------------------------------------------------------------------------------------
# The beat


class TriggerScheduler(RedBeatScheduler):
    """Our beat scheduler (`celery beat -S schedules.beat.scheduler:TriggerScheduler`).

    * `setup_schedule` is a no-op: RedBeat's runs on every beat, standbys included, before the lock is taken,
      and would write entries (even `celery.backend_cleanup`) behind the leader's back.
    * `tick` replaces RedBeat's: due keys come from one ZRANGEBYSCORE, and are loaded, reserved and published
      in chunks by `BeatPass`. An idle tick is one round trip, the earliest score and the heartbeat (plus a
      lock extension every lock_timeout/3).
    * The lock is taken in the tick, never in RedBeat's blocking `beat_init` handler (`_lock_at_start`): a
      standby sleeps until the held lock's expiry when that is sooner than its interval, and a new leader
      logs the end of its first tick (`_first_tick_done`), the marker benchmarks/beat.py times takeovers by.
    * The lock is extended every lock_timeout/3 — also between the chunks of a long tick and of a reconcile,
      load phase included — so a herd never outlives it. A beat that finds the lock held by another (it was
      frozen or cut off past its timeout) stands by and takes the lock again when it is free; a Redis outage
      is waited out with backoff, with a lock extension before anything is fired again (`tick`).
    * Reconcile runs on the first tick after the lock is taken (never before: standbys must not race the
      leader) and then every SCHEDULER_RECONCILE_SECONDS, on the leader only.
    """

    Entry = TriggerEntry
    lock: Any  # RedBeat's: the redis-py lock while this beat leads, else None

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        super().__init__(app, *args, **kwargs)
        self.reconcile_seconds = float(settings.SCHEDULER_RECONCILE_SECONDS)
        self._lock_extended_at = -math.inf
        self._reconciled_at = -math.inf
        self._reconcile_now = True
        self._once = Once()
        self._beat_pass: BeatPass | None = None
        self._dispatching = False
        self._housekeeping_at = -math.inf
        self._housekeeping_next: dict[str, float] = {}
        self._outages = 0  # consecutive ticks that found Redis unreachable
        self._audit = Audit(budget=float(settings.SCHEDULER_AUDIT_BUDGET))
        self._created = time.monotonic()
        self._leading_since: float | None = None  # set when the lock is taken, cleared by the first tick
        self._tick_started = self._created
        self._tick_seconds: float | None = None
        self._standby_sleep = self._standby_interval()
        self._identity = metrics.heartbeat_identity()

    def setup_schedule(self) -> None:
        return None

    @property
    def beat_pass(self) -> BeatPass:
        if self._beat_pass is None:
            token = self.lock.local.token if self.lock is not None else None
            self._beat_pass = BeatPass(
                app=self.app,
                client=redis_client(self.app),
                origin="schedule",
                lock_token=token,
                keep_alive=self.keep_alive,
                producer=self.producer,
                once=self._once,
            )
        return self._beat_pass

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Lead when this beat holds the lock, stand by when another does, wait out Redis when it is gone;
        never exit for any of these (a beat needs no supervisor to come back from a Redis outage). Fires are
        only reserved after the lock was proven ours in this tick, and the reserve script checks the lock
        token again, so a beat that was cut off or frozen past its lock can never fire beside the leader."""
        try:
            if not self._hold_lock():
                return self._standby_sleep
            interval = self._lead()
        except LockLost as exc:
            self._stand_by(str(exc))
            return self._standby_interval()
        except OUTAGE_ERRORS as exc:
            return self._wait_out(exc)
        if self._outages:
            logger.warning("beat: Redis is back after %d failed ticks; leading again", self._outages)
            self._outages = 0
        return interval

    def _lead(self) -> float:
        self._tick_started = started = time.monotonic()
        if self._reconcile_now or started - self._reconciled_at >= self.reconcile_seconds:
            self.reconcile()
        self.housekeeping()
        interval = self.fire_due()
        # The audit takes a tick's slack only: never while fires are due, and its slice comes off the sleep.
        if interval >= AUDIT_SLACK_SECONDS and self._audit.due():
            audit_started = time.monotonic()
            self.audit_step()
            interval = max(0.0, interval - (time.monotonic() - audit_started))
        self._tick_seconds = time.monotonic() - started
        if self._leading_since is not None:
            self._first_tick_done()
        return interval

    def _first_tick_done(self) -> None:
        """The marker of a takeover (benchmarks/beat.py reads it): the wall time at which a new leader's first
        tick ended — its repair of what changed since the watermark and what was due, fired — and how long
        that took after the lock was taken and after this scheduler was created (Django and Celery start-up
        come before that)."""
        leading_since, self._leading_since = self._leading_since, None
        now = time.monotonic()
        took, since = now - (leading_since or now), now - self._created
        logger.info(
            "beat: first tick as leader done at %.3f: %.3f s after taking the lock, %.3f s after the "
            "scheduler was created",
            time.time(), took, since,
        )  # fmt: skip

    def _heartbeat(self) -> list[str]:
        """The heartbeat /healthz reads (`toolkit.metrics.beat_heartbeat`'s fields), written by the tick's own
        round trip (`BeatPass.due_keys`) instead of one of its own: the wall time now, and the duration of
        the last complete tick (of this one so far, on the first)."""
        duration = self._tick_seconds
        if duration is None:
            duration = time.monotonic() - self._tick_started
        return [*self._identity, "tick_at", f"{time.time():.3f}", "tick_seconds", f"{duration:.6f}"]

    def _hold_lock(self) -> bool:
        """Whether this beat leads now: it holds the lock (extended when due) or has just taken it. A beat
        without one (a standby, a leader that lost it, one started while Redis was down) tries to take it
        without blocking, so it keeps ticking and answering signals."""
        if not self.lock_key:
            return True
        if self.lock is None:
            client = redis_client(self.app)
            candidate = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
            candidate.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # extend *to*, not *by*
            if not candidate.acquire(blocking=False):
                self._standby_sleep = self._until_expiry(client)
                return False
            self.lock = candidate
            self._lock_extended_at = self._leading_since = time.monotonic()
            self._reconcile_now = True  # a new leader repairs what changed before trusting the entries
            self._beat_pass = None
            self._tick_seconds = None
            logger.info("beat: Acquired lock; leading")
        self.keep_alive()
        return True

    def _until_expiry(self, client: redis.Redis) -> float:
        """How long a standby sleeps: until just after the held lock expires when that is sooner than its
        usual interval. A leader killed with -9 is then replaced as its lock runs out (plus the new leader's
        first tick), not up to a loop interval later; a leader that released the lock (SIGTERM) is
        replaced within the usual interval."""
        try:
            remaining = client.pttl(self.lock_key)
        except OUTAGE_ERRORS:
            return self._standby_interval()
        if remaining is None or remaining < 0:  # -2 gone (released meanwhile), -1 no TTL (not ours to time)
            return STANDBY_MARGIN_SECONDS if remaining == -2 else self._standby_interval()
        return min(self._standby_interval(), remaining / 1000 + STANDBY_MARGIN_SECONDS)

    def _standby_interval(self) -> float:
        return max(0.5, min(self.max_interval, self.lock_timeout / 6))

    def _stand_by(self, reason: str) -> None:
        logger.warning("beat: %s; standing by until the lock is free", reason)
        self.lock = None
        self._beat_pass = None
        self._reconcile_now = True
        self._leading_since = None

    def _wait_out(self, exc: BaseException) -> float:
        """Redis (or the broker) is unreachable: nothing can be fired or proven. Back off, force a lock
        extension first thing once it answers, and drop the broker connection so the next publish makes a
        fresh one."""
        self._outages += 1
        delay = min(5.0, 0.25 * 2**self._outages)
        if self._outages == 1 or self._outages % 30 == 0:
            logger.warning(
                "beat: Redis unreachable (%s: %s); not firing, retrying (%d failed ticks)",
                type(exc).__name__, exc, self._outages,
            )  # fmt: skip
        self._lock_extended_at = -math.inf
        self._beat_pass = None
        producer = self.__dict__.pop("producer", None)
        connection = self.__dict__.pop("connection", None)
        for part in (producer, connection):
            try:
                if part is not None:
                    part.release()
            except Exception:  # a broken connection may fail to close; it is dropped either way
                logger.debug("beat: closing a broken broker connection failed", exc_info=True)
        return delay

    def housekeeping(self) -> None:
        """At most once a second: a Redis round trip per system task is not worth making on every tick."""
        if time.monotonic() - self._housekeeping_at < 1.0:
            return
        self._housekeeping_at = time.monotonic()
        try:
            send_housekeeping(app=self.app, client=self.beat_pass.client, next_try=self._housekeeping_next)
        except Exception:
            logger.exception("beat: could not send housekeeping tasks; next try in 1s")

    def fire_due(self) -> float:
        """Send what is due; return how long to sleep (0 after a busy pass: more may have fallen due)."""
        if self._dispatching:
            return 0.0
        self._dispatching = True
        try:
            now = clock.now()
            due, upcoming = self.beat_pass.due_keys(now, heartbeat=self._heartbeat())
            if due and self.beat_pass.run(due, now).progressed:
                return 0.0
        finally:
            self._dispatching = False
        if upcoming is None:
            return self.max_interval
        return max(0.0, min(self.max_interval, upcoming - clock.now().timestamp()))

    def keep_alive(self) -> None:
        """Extend the lock once a third of its timeout has passed since the last extension."""
        if not self.lock_key:
            return
        if self.lock is None:
            raise LockLost("beat is running without the leader lock")
        started = time.monotonic()
        if started - self._lock_extended_at < self.lock_timeout / 3:
            return
        try:
            self.lock.extend(int(self.lock_timeout))
        except LockNotOwnedError:
            if not self._retake_vanished_lock():
                raise LockLost("the leader lock is held by another beat") from None
        self._lock_extended_at = started

    def _retake_vanished_lock(self) -> bool:
        """A lock key that is simply gone (FLUSHDB, a Redis restarted without data) has no other holder: take
        it back atomically (SET NX) with our token rather than exit, and reconcile at once, since the entries
        are most likely gone too. If a standby got there first, SET NX fails and we exit."""
        taken = redis_client(self.app).set(
            self.lock_key, self.lock.local.token, nx=True, px=int(self.lock_timeout * 1000)
        )
        if taken:
            logger.warning("beat: the leader lock had vanished (Redis flushed or restarted?); took it back")
            self._reconcile_now = True
        return bool(taken)

    def reconcile(self) -> ReconcileReport | None:
        """The periodic repair, and the first thing a new leader does: only what changed since the last
        repair's watermark (less an overlap for transactions that committed late), so taking over at a
        million triggers costs what changed, not a million rows. A full rebuild runs instead when Redis
        has lost what the last full one built (`built` is gone: FLUSHDB, a Redis restarted empty, a
        first start) or holds another layout (an upgrade), its chunks interleaved with firing as ever."""
        self._reconcile_now = False
        close_old_connections()  # a long-lived process: drop a connection the database has closed
        try:
            client, keys = redis_client(self.app), Keys.of(self.app)
            built, watermark, layout = client.mget([keys.built, keys.watermark, keys.layout])
            pause, producer = self._between_reconcile_chunks, self.producer
            if built is None or watermark is None or layout != LAYOUT:
                logger.info("beat: no complete build of layout %s in Redis; rebuilding every entry", LAYOUT)
                report = reconcile(app=self.app, pause=pause, producer=producer)
            else:
                overlap = timedelta(seconds=2 * self.reconcile_seconds + 30)
                since = parse_instant(watermark, "watermark") - overlap
                report = reconcile_changed(since=since, app=self.app, pause=pause, producer=producer)
        except LockLost:
            raise
        except Exception:
            logger.exception("beat: reconcile failed; next try in %ss", self.reconcile_seconds)
            return None
        finally:
            self._reconciled_at = time.monotonic()
            close_old_connections()
        for line in report.lines():
            (logger.info if report.changed else logger.debug)("beat: %s", line)
        return report

    def audit_step(self) -> None:
        """One slice of the slow full audit (see `Audit`); a failure is logged and the audit goes on."""
        close_old_connections()
        try:
            report = self._audit.step(app=self.app, producer=self.producer)
        except OUTAGE_ERRORS:
            raise
        except Exception:
            logger.exception("beat: an audit slice failed; it goes on from the next slice")
            self._audit.next_at = time.monotonic() + self.reconcile_seconds
            return
        for line in report.lines() if report.changed else ():
            logger.info("beat: audit: %s", line)

    def _between_reconcile_chunks(self) -> None:
        self.keep_alive()
        self.fire_due()

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        """Celery's per-entry path, for callers of the generic API: the same reserve-then-publish pass."""
        return self.beat_pass.run([entry.key if isinstance(entry, TriggerEntry) else str(entry)], clock.now())

    def reserve(self, entry: Any) -> Any:
        raise NotImplementedError("trigger entries are reserved by compare-and-set in BeatPass")

    @property
    def info(self) -> str:
        return f"{super().info}\n       . reconcile -> every {self.reconcile_seconds:g}s"


@beat_init.connect
def _lock_at_start(sender: Any = None, **kwargs: Any) -> None:
    """RedBeat's own beat_init handler blocks in `lock.acquire()`, trying every loop interval, until it holds
    the lock. A TriggerScheduler takes the lock in its tick instead, without blocking (`_hold_lock`), and a
    standby sleeps until the held lock's expiry (`_until_expiry`): a takeover then follows the expiry by
    milliseconds, not by up to a loop interval. Any other scheduler keeps RedBeat's handler."""
    if not isinstance(getattr(sender, "scheduler", None), TriggerScheduler):
        acquire_distributed_beat_lock(sender, **kwargs)


beat_init.disconnect(acquire_distributed_beat_lock)


# --------------------------------------------------------------------------------------------------------
# Housekeeping: the fleet's own periodic tasks


def housekeeping_tasks() -> dict[str, float]:
    """System tasks sent on a period (task name -> seconds): the sweeper (timeouts, polls, lost messages)
    and retention. They are not trigger entries, and `setup_schedule` is a no-op, so Celery's own
    `beat_schedule` would never reach Redis: the leader (or a tick) sends them from here instead."""
    return {
        "executions.sweep": float(settings.SCHEDULER_SWEEP_SECONDS),
        "executions.prune": float(settings.SCHEDULER_PRUNE_SECONDS),
        "notifications.sweep": float(settings.SCHEDULER_NOTIFY_SWEEP_SECONDS),
        "notifications.prune": float(settings.SCHEDULER_PRUNE_SECONDS),
    }


def send_housekeeping(
    *, app: Celery | None = None, client: redis.Redis | None = None, next_try: dict[str, float] | None = None
) -> list[str]:
    """Send each system task whose period has passed. The period is claimed fleet-wide with SET NX EX, so a
    failover, a restart or ticks beside a beat neither double nor skip a period. Urgent priority: a sweep
    stuck behind a backlog is what would let that backlog's timeouts and lost messages go unnoticed.

    `next_try` (the beat's, kept across ticks: task -> monotonic time) skips a task whose claim this process
    made and which cannot expire yet, and retries one claimed elsewhere a second later: a leader ticking
    every second then makes a claim per period, not four round trips per tick."""
    app = app or celery_app()
    client = client or redis_client(app)
    keys = Keys.of(app)
    sent = []
    now = time.monotonic()
    for task, period in housekeeping_tasks().items():
        if period <= 0 or (next_try is not None and now < next_try.get(task, -math.inf)):
            continue
        claimed = client.set(keys.housekeeping(task), "1", nx=True, ex=max(1, math.ceil(period)))
        if claimed:
            app.send_task(task, priority=0, expires=max(1.0, period))
            sent.append(task)
        if next_try is not None:
            next_try[task] = now + (period if claimed else 1.0)
    return sent


# --------------------------------------------------------------------------------------------------------
# The beat-less tick


def run_tick(*, app: Celery | None = None) -> dict[str, Any]:
    """One beat pass for hosts without a long-lived beat (`POST /api/v1/tick`).

    Due entries come from Redis and go through the same reserve-then-publish pass as the beat, with the
    compare-and-set on (next_slot, rev) but without the lock requirement: concurrent ticks, or a tick beside
    a beat, each reserve a slot at most once, and the unique (trigger, slot) execution absorbs anything else.
    Redis rather than the database, because that is the one path whose semantics (jitter, latest due slot,
    edits racing a pass) are tested, and because the database's next_run_at is only as fresh as the last
    fire. When no beat holds the lock, a tick also reconciles, at most once per reconcile period across all
    callers, so a beat-less fleet still recovers from an empty Redis."""
    app = app or celery_app()
    client, keys = redis_client(app), Keys.of(app)
    reconciled: ReconcileReport | None = None
    period = max(1, int(settings.SCHEDULER_RECONCILE_SECONDS))
    if not client.exists(keys.lock) and client.set(keys.reconciled, "tick", nx=True, ex=period):
        reconciled = reconcile(app=app)
    housekeeping = send_housekeeping(app=app, client=client)
    beat_pass = BeatPass(app=app, client=client, origin="tick")
    now = clock.now()
    due, _upcoming = beat_pass.due_keys(now)
    result = beat_pass.run(due, now)
    return {
        "fired": [fire.as_json() for fire in result.fired],
        "count": len(result.fired),
        "conflicts": result.conflicts,
        "reconciled": reconciled.as_json() if reconciled is not None else None,
        "housekeeping": housekeeping,
    }
