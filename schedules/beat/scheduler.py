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
from django.conf import settings
from django.db import close_old_connections
from redbeat.schedulers import (
    LUA_EXTEND_TO_SCRIPT,
    RedBeatScheduler,
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


# --------------------------------------------------------------------------------------------------------
# The beat


class TriggerScheduler(RedBeatScheduler):
    """Our beat scheduler (`celery beat -S schedules.beat.scheduler:TriggerScheduler`).

    * `setup_schedule` is a no-op: RedBeat's runs on every beat, standbys included, before the lock is taken,
      and would write entries (even `celery.backend_cleanup`) behind the leader's back.
    * `tick` replaces RedBeat's: due keys come from one ZRANGEBYSCORE, and are loaded, reserved and published
      in chunks by `BeatPass`. An idle tick is one round trip (plus a lock extension every lock_timeout/3).
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
        self._outages = 0  # consecutive ticks that found Redis unreachable
        self._audit = Audit(budget=float(settings.SCHEDULER_AUDIT_BUDGET))

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
                return self._standby_interval()
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

    @metrics.beat_tick  # the heartbeat /healthz reads: written by the leader, on ticks that got through
    def _lead(self) -> float:
        if self._reconcile_now or time.monotonic() - self._reconciled_at >= self.reconcile_seconds:
            self.reconcile()
        self.housekeeping()
        interval = self.fire_due()
        # The audit takes a tick's slack only: never while fires are due, and its slice comes off the sleep.
        if interval >= AUDIT_SLACK_SECONDS and self._audit.due():
            started = time.monotonic()
            self.audit_step()
            interval = max(0.0, interval - (time.monotonic() - started))
        return interval

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
                return False
            self.lock = candidate
            self._lock_extended_at = time.monotonic()
            self._reconcile_now = True  # a new leader checks every entry before trusting them
            self._beat_pass = None
            logger.info("beat: acquired the leader lock; leading")
        self.keep_alive()
        return True

    def _standby_interval(self) -> float:
        return max(0.5, min(self.max_interval, self.lock_timeout / 6))

    def _stand_by(self, reason: str) -> None:
        logger.warning("beat: %s; standing by until the lock is free", reason)
        self.lock = None
        self._beat_pass = None
        self._reconcile_now = True

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
            send_housekeeping(app=self.app, client=self.beat_pass.client)
        except Exception:
            logger.exception("beat: could not send housekeeping tasks; next try in 1s")

    def fire_due(self) -> float:
        """Send what is due; return how long to sleep (0 after a busy pass: more may have fallen due)."""
        if self._dispatching:
            return 0.0
        self._dispatching = True
        try:
            now = clock.now()
            due, upcoming = self.beat_pass.due_keys(now)
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


def send_housekeeping(*, app: Celery | None = None, client: redis.Redis | None = None) -> list[str]:
    """Send each system task whose period has passed. The period is claimed fleet-wide with SET NX EX, so a
    failover, a restart or ticks beside a beat neither double nor skip a period. Urgent priority: a sweep
    stuck behind a backlog is what would let that backlog's timeouts and lost messages go unnoticed."""
    app = app or celery_app()
    client = client or redis_client(app)
    keys = Keys.of(app)
    sent = []
    for task, period in housekeeping_tasks().items():
        if period > 0 and client.set(keys.housekeeping(task), "1", nx=True, ex=max(1, math.ceil(period))):
            app.send_task(task, priority=0, expires=max(1.0, period))
            sent.append(task)
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
