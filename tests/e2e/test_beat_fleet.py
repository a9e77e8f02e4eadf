"""The beat as the fleet runs it: real `celery beat -S schedules.beat.scheduler:TriggerScheduler` and `celery
worker` processes on the real Redis and database, with the short test timings (lock 6 s, loop 1 s, reconcile
3 s). Each scenario asserts on what the beats published (their `fire trigger=… slot=…` lines, one per fire at
DEBUG on `schedules.beat.fires`, which the beats here log with LOG_LEVELS) and on the `Execution` rows the
workers recorded: one per slot, never two."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command

from executions.models import Execution
from scheduler_project.celery import app
from schedules import services
from schedules.beat.entries import Keys
from schedules.models import Trigger
from tests.support.beat import entry_of, write_raw
from tests.support.procs import Fleet, celery_cmd, wait_for
from toolkit import metrics

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEYS = Keys.of(app)
FIRE_LINE = re.compile(r"^\[([\d-]+ [\d:,]+): DEBUG/\w+\] fire trigger=(\S+) slot=(\S+) origin=(\w+)", re.M)
BATCH_LINE = re.compile(r"INFO/\w+\] published (\d+) fires: first trigger=", re.M)
#: The per-fire DEBUG line of the beat's fire logger, the rest of the beat at INFO.
FIRE_DEBUG = {"LOG_LEVELS": "schedules.beat.fires=DEBUG"}
ACQUIRED = re.compile(r"^\[([\d-]+ [\d:,]+): INFO/\w+\] beat: Acquired lock", re.M)


# --- Fleet helpers ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_logs(processes: Fleet) -> None:
    """The fleet appends to per-test log files; publishes are counted from logs, so start from empty ones."""
    for old in processes.log_dir.glob("*.log"):
        old.unlink()


def start_worker(processes: Fleet, name: str = "worker", concurrency: int = 2) -> None:
    processes.start(
        name,
        celery_cmd(
            "worker",
            "--loglevel=INFO",
            f"--concurrency={concurrency}",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ),
    )
    wait_for(lambda: " ready." in processes.log(name), timeout=60, what=f"{name} ready")


def start_beat(processes: Fleet, name: str, *, leader: bool = True, **env: str) -> None:
    command = celery_cmd("beat", "-S", "schedules.beat.scheduler:TriggerScheduler", "--loglevel=INFO")
    processes.start(name, command, **{**FIRE_DEBUG, **env})
    if leader:
        wait_for(lambda: ACQUIRED.search(processes.log(name)), timeout=60, what=f"{name} to take the lock")
    else:
        wait_for(lambda: "beat: Starting" in processes.log(name), timeout=60, what=f"{name} to start")


def log_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC)


def acquired_at(processes: Fleet, name: str) -> datetime | None:
    found = ACQUIRED.search(processes.log(name))
    return log_time(found.group(1)) if found else None


def published(processes: Fleet, *names: str, origin: str = "schedule") -> list[tuple[str, datetime]]:
    """Every (trigger id, slot) the named beats published, in log order, duplicates kept: their per-fire
    DEBUG lines, which must add up to the counts of their per-batch INFO lines (checked here, so every
    scenario checks it)."""
    for name in names:
        log = processes.log(name)
        batched = sum(int(count) for count in BATCH_LINE.findall(log))
        assert batched == len(FIRE_LINE.findall(log)), f"{name}: the batch lines count every fire line"
    return [
        (trigger_id, datetime.fromisoformat(slot))
        for name in names
        for _stamp, trigger_id, slot, line_origin in FIRE_LINE.findall(processes.log(name))
        if line_origin == origin
    ]


def slots_of(publishes: Iterable[tuple[str, datetime]], trigger: Trigger) -> list[datetime]:
    return [slot for trigger_id, slot in publishes if trigger_id == str(trigger.pk)]


def recorded(trigger: Trigger) -> list[datetime]:
    return list(Execution.objects.filter(trigger=trigger).order_by("slot").values_list("slot", flat=True))


def assert_each_once(slots: list[datetime], what: str) -> None:
    dupes = [slot for slot, n in Counter(slots).items() if n > 1]
    assert not dupes, f"{what} more than once: {dupes}"


def every(start: datetime, end: datetime, step: int) -> list[datetime]:
    return [
        start + timedelta(seconds=k * step) for k in range(int((end - start).total_seconds()) // step + 1)
    ]


def wait_recorded(trigger: Trigger, slots: list[datetime], *, timeout: float = 60) -> None:
    wait_for(
        lambda: set(slots) <= set(recorded(trigger)),
        timeout=timeout,
        what=f"executions of {len(slots)} slots",
    )


def register(user, **fields) -> Trigger:
    defaults = {"name": "t", "workflow_id": "wf", "overlap_policy": "allow"}
    return services.trigger_register(owner=user, **{**defaults, **fields})


def sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def next_slot(trigger: Trigger, after: datetime | None = None) -> datetime:
    trigger.refresh_from_db()
    return services.trigger_next_slot(trigger=trigger, after=after or datetime.now(UTC))


# --- Failover -----------------------------------------------------------------------------------------------


def test_kill_9_of_the_leader_hands_over_to_the_standby_without_a_duplicate_slot(
    processes, redis_client, user
):
    start_worker(processes)
    trigger = register(user, cron_expression="*/2 * * * * *")
    start_beat(processes, "beat-a")
    start_beat(processes, "beat-b", leader=False)
    wait_for(lambda: len(published(processes, "beat-a")) >= 3, timeout=20, what="the leader firing")

    processes.send("beat-a", signal.SIGKILL)
    killed = datetime.now(UTC)
    wait_for(lambda: acquired_at(processes, "beat-b"), timeout=30, what="the standby to take the lock")
    failover = (acquired_at(processes, "beat-b") - killed).total_seconds()
    print(f"\nfailover: standby took the lock {failover:.2f}s after kill -9 (lock timeout 6s)")
    wait_for(lambda: len(published(processes, "beat-b")) >= 3, timeout=20, what="the new leader firing")
    heartbeat = metrics.read_heartbeat(redis_client)
    assert heartbeat.pid == processes.procs["beat-b"].pid, "the heartbeat /healthz reads is the new leader's"
    assert heartbeat.age() < 2
    processes.stop("beat-b")

    sent = slots_of(published(processes, "beat-a", "beat-b"), trigger)
    assert_each_once(sent, "a slot was published")
    assert min(slots_of(published(processes, "beat-b"), trigger)) > max(
        slots_of(published(processes, "beat-a"), trigger)
    )
    expected = every(min(sent), max(sent), 2)
    wait_recorded(trigger, expected)
    assert recorded(trigger) == expected, "every slot, the ones during the failover too, recorded once"
    assert failover < 6 + 3, "the standby takes over within a lock timeout (plus its polling)"


def test_a_frozen_leader_stands_by_at_its_next_extension_and_leads_again_later(processes, redis_client, user):
    start_worker(processes)
    trigger = register(user, cron_expression="*/2 * * * * *")
    start_beat(processes, "beat-a")
    start_beat(processes, "beat-b", leader=False)
    wait_for(lambda: len(published(processes, "beat-a")) >= 2, timeout=20, what="the leader firing")

    processes.send("beat-a", signal.SIGSTOP)
    wait_for(lambda: acquired_at(processes, "beat-b"), timeout=30, what="the standby to take the lock")
    wait_for(lambda: len(published(processes, "beat-b")) >= 2, timeout=20, what="the new leader firing")
    processes.send("beat-a", signal.SIGCONT)
    resumed = time.monotonic()
    wait_for(lambda: "standing by" in processes.log("beat-a"), timeout=20, what="the old leader to stand by")
    assert time.monotonic() - resumed < 6 / 3 + 2, "it stands by at its next lock extension"
    assert "held by another beat" in processes.log("beat-a")
    assert processes.procs["beat-a"].poll() is None, "standing by, not exiting: no supervisor needed"
    fired_a = len(published(processes, "beat-a"))
    before = len(published(processes, "beat-b"))
    wait_for(
        lambda: len(published(processes, "beat-b")) >= before + 2, timeout=20, what="the new leader firing on"
    )
    assert len(published(processes, "beat-a")) == fired_a, "the standby fires nothing"

    processes.stop("beat-b")  # SIGTERM releases the lock: the old leader takes it back and fires on
    wait_for(
        lambda: len(published(processes, "beat-a")) >= fired_a + 2, timeout=20, what="beat-a leading again"
    )
    processes.stop("beat-a")

    sent = slots_of(published(processes, "beat-a", "beat-b"), trigger)
    assert_each_once(sent, "a slot was published")
    expected = every(min(sent), max(sent), 2)
    wait_recorded(trigger, expected)
    assert recorded(trigger) == expected


# --- Redis loses its data -----------------------------------------------------------------------------------


def test_flushdb_while_running_is_repaired_within_one_reconcile_period(processes, redis_client, user):
    start_worker(processes)
    triggers = [register(user, name=f"t{i}", cron_expression="*/2 * * * * *") for i in range(3)]
    start_beat(processes, "beat-a")
    start_beat(processes, "beat-b", leader=False)
    wait_for(lambda: len(published(processes, "beat-a")) >= 6, timeout=20, what="the leader firing")

    redis_client.flushdb()
    flushed = time.monotonic()
    keys = [KEYS.entry(t.pk) for t in triggers]
    wait_for(
        lambda: all(redis_client.zscore(KEYS.schedule, k) for k in keys), timeout=4 + 1, what="entries back"
    )
    print(f"\nentries back {time.monotonic() - flushed:.2f}s after FLUSHDB (reconcile period 3s)")
    after = len(published(processes, "beat-a", "beat-b"))
    wait_for(lambda: len(published(processes, "beat-a", "beat-b")) >= after + 6, timeout=20, what="firing on")
    processes.stop("beat-a")
    processes.stop("beat-b")

    for trigger in triggers:
        sent = slots_of(published(processes, "beat-a", "beat-b"), trigger)
        assert_each_once(sent, "a slot was published")
        # The slot due during the flush is recorded too: the next fire catches it up (it is inside its grace).
        expected = every(min(sent), max(sent), 2)
        wait_recorded(trigger, expected)
        assert recorded(trigger) == expected


# --- The entry follows the services -------------------------------------------------------------------------


def test_create_edit_pause_resume_delete_while_beat_runs(processes, redis_client, user):
    start_worker(processes)
    start_beat(processes, "beat")

    created = datetime.now(UTC)
    trigger = register(user, cron_expression="*/2 * * * * *")
    wait_for(
        lambda: slots_of(published(processes, "beat"), trigger), timeout=10, what="the new trigger firing"
    )
    assert min(slots_of(published(processes, "beat"), trigger)) > created, (
        "a new entry waits for its next slot"
    )

    edited = datetime.now(UTC)
    services.trigger_update(trigger=trigger, cron_expression="*/3 * * * * *")
    wait_for(
        lambda: [s for s in slots_of(published(processes, "beat"), trigger) if s > edited],
        timeout=10,
        what="a slot of the new expression",
    )
    assert all(s.second % 3 == 0 for s in slots_of(published(processes, "beat"), trigger) if s > edited)

    # A zone change: the hour field matches now in Kolkata, not in UTC, until the zone is changed.
    soon = datetime.now(ZoneInfo("Asia/Kolkata")) + timedelta(seconds=8)
    zoned = register(user, name="zoned", cron_expression=f"*/2 * {soon.hour} * * *")
    assert next_slot(zoned) > datetime.now(UTC) + timedelta(minutes=29)
    rezoned = datetime.now(UTC)
    services.trigger_update(trigger=zoned, timezone="Asia/Kolkata")
    wait_for(
        lambda: slots_of(published(processes, "beat"), zoned), timeout=20, what="the zone change to take"
    )
    assert min(slots_of(published(processes, "beat"), zoned)) > rezoned

    paused = datetime.now(UTC)
    services.trigger_pause(trigger=Trigger.objects.get(pk=trigger.pk))
    time.sleep(4)
    resumed = datetime.now(UTC)
    services.trigger_resume(trigger=Trigger.objects.get(pk=trigger.pk))
    wait_for(
        lambda: [s for s in slots_of(published(processes, "beat"), trigger) if s > resumed],
        timeout=10,
        what="firing after resume",
    )
    sent = slots_of(published(processes, "beat"), trigger)
    assert not [s for s in sent if paused < s <= resumed], "nothing fires while paused, nothing is replayed"

    deleted = datetime.now(UTC)
    services.trigger_delete(trigger=Trigger.objects.get(pk=trigger.pk))
    services.trigger_delete(trigger=Trigger.objects.get(pk=zoned.pk))
    time.sleep(3.5)
    processes.stop("beat")
    assert not [s for s in slots_of(published(processes, "beat"), trigger) if s > deleted]
    assert redis_client.zcard(KEYS.schedule) == 0

    assert_each_once(sent, "a slot was published")
    wait_recorded(trigger, [s for s in sent if s <= deleted])
    rows = recorded(trigger)
    assert not [s for s in rows if paused < s <= resumed], (
        "the fire task did not catch up paused slots either"
    )
    assert all(s.second % 3 == 0 for s in rows if s > edited)


# --- Races widened on purpose -------------------------------------------------------------------------------


def test_an_edit_or_delete_racing_a_tick_never_fires_the_old_slot(processes, redis_client, user):
    """The beat sleeps 1.5 s between loading due entries and reserving them (a test-only hook); the edit and
    the delete land inside that window."""
    start_worker(processes)
    edited = register(user, name="edited", cron_expression="*/4 * * * * *")
    doomed = register(user, name="doomed", cron_expression="*/4 * * * * *")
    start_beat(processes, "beat", SCHEDULER_TEST_RESERVE_DELAY="1.5")

    slot = next_slot(edited, datetime.now(UTC) + timedelta(seconds=1))
    sleep_until(
        slot + timedelta(seconds=0.3)
    )  # the beat has loaded both entries and is asleep before reserving
    services.trigger_update(trigger=Trigger.objects.get(pk=edited.pk), cron_expression="2-59/4 * * * * *")
    services.trigger_delete(trigger=Trigger.objects.get(pk=doomed.pk))
    wait_for(
        lambda: [s for s in slots_of(published(processes, "beat"), edited) if s > slot],
        timeout=10,
        what="a slot of the new schedule",
    )
    time.sleep(2)
    processes.stop("beat")

    sent = published(processes, "beat")
    assert slot not in slots_of(sent, edited), "the old schedule's slot was not published after the edit"
    assert all(s.second % 4 == 2 for s in slots_of(sent, edited) if s > slot)
    assert not [s for s in slots_of(sent, doomed) if s >= slot], "the deleted trigger did not fire"
    assert redis_client.zscore(KEYS.schedule, KEYS.entry(doomed.pk)) is None, (
        "and its entry did not come back"
    )
    assert "definition" not in entry_of(KEYS, KEYS.entry(doomed.pk))
    assert int(redis_client.hget(KEYS.stats, "conflicts") or 0) >= 2
    wait_recorded(edited, slots_of(sent, edited))
    assert slot not in recorded(edited), "nor recorded (the fire task would refuse it anyway)"
    assert not [s for s in recorded(doomed) if s >= slot]


# --- A herd longer than the lock ----------------------------------------------------------------------------


HERD = int(os.environ.get("BEAT_E2E_HERD", "2000"))


def test_a_herd_longer_than_the_lock_timeout_is_sent_once_without_a_takeover(processes, redis_client, user):
    """2,000 entries due in the same second, a 3 s lock, and a tick stretched to over 4 s (a 2 s pause per
    1,000-entry chunk): the leader extends its lock inside the tick, so the standby never takes over and no
    slot is published twice."""
    due = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
    fields = {"workflow_id": "wf", "kind": "interval", "interval_seconds": 3600, "anchor_at": due}
    herd = [
        Trigger(
            owner=user, name=f"h{i}", schedule_changed_at=datetime.now(UTC), overlap_policy="allow", **fields
        )
        for i in range(HERD)
    ]
    Trigger.objects.bulk_create(herd, batch_size=500)
    timings = {
        "REDBEAT_LOCK_TIMEOUT": "3",
        "SCHEDULER_TEST_RESERVE_DELAY": "2",
        "SCHEDULER_RECONCILE_SECONDS": "60",
    }
    start_beat(processes, "beat-a", **timings)  # its reconcile on taking the lock writes the entries
    wait_for(lambda: redis_client.zcard(KEYS.schedule) == HERD, timeout=10, what="the herd's entries")
    start_beat(processes, "beat-b", leader=False, **timings)
    wait_for(lambda: len(published(processes, "beat-a")) == HERD, timeout=40, what="the whole herd published")
    time.sleep(2)
    processes.stop("beat-b")  # the standby first: stopping the leader first would hand it the lock
    processes.stop("beat-a")

    sent = published(processes, "beat-a", "beat-b")
    assert len(sent) == HERD, "every entry published"
    assert len(set(sent)) == HERD, "no entry published twice"
    assert {slot for _id, slot in sent} == {due}
    assert acquired_at(processes, "beat-b") is None, "no takeover mid-tick"
    start_worker(processes, concurrency=4)  # fire tasks wait on the database: overlap them
    wait_for(
        lambda: Execution.objects.filter(slot=due).count() == HERD,
        timeout=180,
        interval=1,
        what="one execution per herd entry",
    )


# --- Corrupt entries ----------------------------------------------------------------------------------------


def test_corrupt_entries_are_logged_once_and_the_others_keep_firing(processes, redis_client, user):
    """Bad JSON, an unknown schedule type, a key of the wrong type and a schedule that raises: the beat logs
    each once, drops or quarantines it, and keeps firing the rest. Periodic reconcile and the audit are off
    here so the beat meets each one before anything repairs it; the test then runs the repair
    (`sync_schedules`) itself."""
    start_worker(processes)
    healthy = register(user, name="healthy", cron_expression="*/2 * * * * *")
    raising = register(user, name="raising", cron_expression="*/2 * * * * *")
    start_beat(processes, "beat", SCHEDULER_RECONCILE_SECONDS="600", SCHEDULER_AUDIT_BUDGET="0")
    wait_for(lambda: len(slots_of(published(processes, "beat"), healthy)) >= 2, timeout=10, what="firing")

    now = time.time()
    bad_json = KEYS.entry("00000000-0000-0000-0000-0000000000a1")
    unknown_type = KEYS.entry("00000000-0000-0000-0000-0000000000a2")
    wrong_type = KEYS.entry("00000000-0000-0000-0000-0000000000a3")
    due = str(int(now * 1_000_000))
    write_raw(redis_client, KEYS, bad_json, definition="{oops", fire_at=due)
    crontab = json.dumps({"schedule": {"__type__": "crontab"}})
    write_raw(redis_client, KEYS, unknown_type, definition=crontab, fire_at=due)
    redis_client.rpush(wrong_type, "not", "a", "hash")
    stored = entry_of(KEYS, KEYS.entry(raising.pk))
    definition = {
        **json.loads(stored["definition"]),
        "timezone": "Mars/Olympus",
    }  # decodes; evaluating raises
    raw = redis_client.hmget(KEYS.entry(raising.pk), "s", "f")
    write_raw(
        redis_client, KEYS, KEYS.entry(raising.pk), definition=json.dumps(definition),
        next_slot=raw[0].decode(), fire_at=raw[1].decode(),
    )  # fmt: skip
    redis_client.zadd(KEYS.schedule, {bad_json: now, unknown_type: now, wrong_type: now})
    corrupt = (bad_json, unknown_type, wrong_type)

    wait_for(
        lambda: all(k in processes.log("beat") for k in (*corrupt, KEYS.entry(raising.pk))),
        timeout=10,
        what="the beat to meet every bad entry",
    )
    marked = len(slots_of(published(processes, "beat"), healthy))
    wait_for(
        lambda: len(slots_of(published(processes, "beat"), healthy)) >= marked + 3,
        timeout=15,
        what="the healthy trigger firing on, several ticks later",
    )
    assert redis_client.zscore(KEYS.schedule, KEYS.entry(raising.pk)) > time.time() + 60, "quarantined"
    for key in corrupt:
        assert redis_client.zscore(KEYS.schedule, key) is None, "dropped from the schedule"

    call_command("sync_schedules")  # the repair: orphans removed, the raising entry rewritten from its row
    repaired = datetime.now(UTC)
    wait_for(
        lambda: [s for s in slots_of(published(processes, "beat"), raising) if s > repaired],
        timeout=10,
        what="the repaired trigger firing again",
    )
    processes.stop("beat")
    for key in corrupt:
        assert redis_client.type(key) in (b"none", b"hash"), "at most a tombstone is left"
        assert "definition" not in entry_of(KEYS, key)

    log = processes.log("beat")
    assert processes.procs["beat"].returncode == 0
    for key in corrupt:
        assert len(re.findall(rf"cannot load {re.escape(key)}", log)) == 1, f"{key} logged once"
    assert len(re.findall(rf"schedule of {re.escape(KEYS.entry(raising.pk))} raises", log)) == 1
    sent = slots_of(published(processes, "beat"), healthy)
    assert_each_once(sent, "a slot was published")
    expected = every(min(sent), max(sent), 2)
    wait_recorded(healthy, expected)
    assert recorded(healthy) == expected
