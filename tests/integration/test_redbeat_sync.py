"""RedBeat entries against the real Redis and database: what a service write leaves in Redis, what one beat
pass reserves and sends, how the compare-and-set guards races, and what reconcile repairs. The clock is
frozen; the beat pass runs in-process (real `celery beat` processes: tests/e2e/test_beat_fleet.py)."""

from __future__ import annotations

import base64
import functools
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from redis.crc import key_slot

from scheduler_project.celery import app
from schedules import services, timing
from schedules.beat import dispatch, entries, sync
from schedules.beat.dispatch import QUARANTINE_SECONDS, BeatPass, Fire, LockLost, Once
from schedules.beat.entries import (
    LAYOUT,
    TOMBSTONE_SECONDS,
    EntryDefinition,
    Keys,
    TriggerEntry,
    epoch_text,
    iso,
)
from schedules.beat.reconcile import FIRE_DELIVERY_HORIZON, Audit, reconcile, reconcile_changed
from schedules.models import Trigger
from tests.support.beat import entry_of, write_raw
from toolkit import broker

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KEYS = Keys.of(app)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Fire]:
    """What the beat publishes, captured at the publish step (reserve already happened)."""
    captured: list[Fire] = []

    def capture(_app, fires, *, producer=None) -> int:
        captured.extend(fires)
        return len(fires)

    monkeypatch.setattr(dispatch, "publish", capture)
    return captured


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a service and its after-commit sync, as a real request would."""

    def run(service, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return service(**kwargs)

    return run


@pytest.fixture
def every_ten_seconds(user, frozen_clock, redis_client, committed) -> Trigger:
    frozen_clock.set(T0 + timedelta(seconds=3))
    trigger = committed(
        services.trigger_register, owner=user, name="t", workflow_id="wf", cron_expression="*/10 * * * * *"
    )
    # created_at comes from the real clock (auto_now_add); catch-up floors on it, so put it on the frozen one.
    Trigger.objects.filter(pk=trigger.pk).update(created_at=T0)
    return trigger


def entry(client: redis.Redis, trigger: Trigger) -> dict[str, str]:
    return entry_of(KEYS, KEYS.entry(trigger.pk))


def score(client: redis.Redis, trigger: Trigger) -> float | None:
    return client.zscore(KEYS.schedule, KEYS.entry(trigger.pk))


def beat_pass(*, origin: str = "schedule", token: bytes | None = None) -> BeatPass:
    return BeatPass(app=app, client=entries.redis_client(app), origin=origin, lock_token=token)


def run_pass(at: datetime, **kwargs) -> list[Fire]:
    bp = beat_pass(**kwargs)
    due, _next = bp.due_keys(at)
    return bp.run(due, at).fired


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- Entries follow the services -------------------------------------------------------------------------


def test_register_writes_an_entry_due_at_the_next_slot_not_at_once(every_ten_seconds, redis_client, sent):
    stored = entry(redis_client, every_ten_seconds)
    assert stored["next_slot"] == "2026-03-02T12:00:10+00:00"
    assert stored["fire_at"] == "2026-03-02T12:00:10+00:00"
    assert stored["rev"] == "1"
    assert score(redis_client, every_ten_seconds) == at(10).timestamp()
    definition = json.loads(stored["definition"])
    assert (definition["priority"], definition["cron_expression"]) == (6, "*/10 * * * * *")
    loaded = TriggerEntry.from_key(KEYS.entry(every_ten_seconds.pk), app=app)
    assert (loaded.task, loaded.args) == ("executions.fire", [str(every_ten_seconds.pk)])
    assert run_pass(at(9.9)) == [], "a new entry waits for its next slot"


def test_a_due_entry_is_sent_once_with_its_slot_and_advanced(every_ten_seconds, redis_client, sent):
    assert [(f.slot, f.origin, f.priority) for f in run_pass(at(10.2))] == [(at(10), "schedule", 6)]
    assert entry(redis_client, every_ten_seconds)["next_slot"] == "2026-03-02T12:00:20+00:00"
    assert score(redis_client, every_ten_seconds) == at(20).timestamp()
    assert run_pass(at(10.4)) == [], "a reserved slot is not sent again"
    assert redis_client.hget(KEYS.stats, "fired_schedule") == b"1"


def test_jitter_delays_fire_at_by_whole_seconds_and_never_changes_the_slot(
    user, frozen_clock, redis_client, committed, sent
):
    frozen_clock.set(at(1))
    trigger = committed(
        services.trigger_register,
        owner=user,
        name="j",
        workflow_id="wf",
        cron_expression="*/10 * * * * *",
        jitter_seconds=5,
    )
    stored = entry(redis_client, trigger)
    fire_at = datetime.fromisoformat(stored["fire_at"])
    assert stored["next_slot"] == "2026-03-02T12:00:10+00:00"
    assert at(10) <= fire_at <= at(15)
    assert score(redis_client, trigger) == fire_at.timestamp()
    if fire_at > at(10):
        assert run_pass(fire_at - timedelta(seconds=0.5)) == []
    assert [f.slot for f in run_pass(fire_at)] == [at(10)]


def test_schedule_edit_moves_the_due_time_at_once(
    every_ten_seconds, frozen_clock, redis_client, committed, sent
):
    frozen_clock.set(at(4))
    committed(services.trigger_update, trigger=every_ten_seconds, cron_expression="*/3 * * * * *")
    stored = entry(redis_client, every_ten_seconds)
    assert (stored["next_slot"], stored["rev"]) == ("2026-03-02T12:00:06+00:00", "2")
    assert score(redis_client, every_ten_seconds) == at(6).timestamp()


def test_zone_edit_recomputes_the_slot_in_the_new_zone(user, frozen_clock, redis_client, committed, sent):
    frozen_clock.set(at(0))
    trigger = committed(
        services.trigger_register, owner=user, name="z", workflow_id="wf", cron_expression="0 9 * * *"
    )
    assert entry(redis_client, trigger)["next_slot"] == "2026-03-03T09:00:00+00:00"
    committed(services.trigger_update, trigger=trigger, timezone="America/New_York")
    assert entry(redis_client, trigger)["next_slot"] == "2026-03-02T14:00:00+00:00"


def test_an_edit_that_keeps_the_schedule_keeps_the_slot_already_due(
    every_ten_seconds, frozen_clock, redis_client, committed, sent
):
    frozen_clock.set(at(10.5))  # slot 12:00:10 is due, the beat has not picked it up yet
    committed(services.trigger_update, trigger=every_ten_seconds, name="renamed", priority="urgent")
    stored = entry(redis_client, every_ten_seconds)
    assert stored["next_slot"] == "2026-03-02T12:00:10+00:00", "a rename must not skip the slot owed"
    assert json.loads(stored["definition"])["priority"] == 0
    assert [(f.slot, f.priority) for f in run_pass(at(10.6))] == [(at(10), 0)]


def test_pause_removes_the_entry_and_resume_does_not_replay_paused_slots(
    every_ten_seconds, frozen_clock, redis_client, committed, sent
):
    committed(services.trigger_pause, trigger=every_ten_seconds)
    stored = entry(redis_client, every_ten_seconds)
    assert stored == {"rev": "2"}, "a paused entry keeps only its revision"
    assert score(redis_client, every_ten_seconds) is None
    assert 0 < redis_client.ttl(KEYS.entry(every_ten_seconds.pk)) <= TOMBSTONE_SECONDS
    frozen_clock.set(at(47))
    assert run_pass(at(47)) == []
    committed(services.trigger_resume, trigger=every_ten_seconds)
    stored = entry(redis_client, every_ten_seconds)
    assert (stored["next_slot"], stored["rev"]) == ("2026-03-02T12:00:50+00:00", "3")
    assert redis_client.ttl(KEYS.entry(every_ten_seconds.pk)) == -1
    assert run_pass(at(48)) == []


def test_delete_removes_the_entry_for_good(every_ten_seconds, redis_client, committed, sent):
    committed(services.trigger_delete, trigger=every_ten_seconds)
    assert score(redis_client, every_ten_seconds) is None
    assert "definition" not in entry(redis_client, every_ten_seconds)
    sync.sync_trigger(every_ten_seconds.pk)  # a late duplicate sync changes nothing
    assert score(redis_client, every_ten_seconds) is None
    assert run_pass(at(60)) == []


def test_sync_of_a_trigger_that_does_not_exist_leaves_no_entry(redis_client, sent):
    sync.sync_trigger("00000000-0000-0000-0000-000000000001")
    assert redis_client.zcard(KEYS.schedule) == 0


# --- Loading: every failure is a KeyError ----------------------------------------------------------------


def with_definition(definition: str):
    return lambda c, k: write_raw(c, KEYS, k, definition=definition)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(with_definition("{not json"), id="bad-json"),
        pytest.param(with_definition(json.dumps({"schedule": {"__type__": "crontab"}})), id="unknown-type"),
        pytest.param(lambda c, k: c.hset(k, mapping={"d": "gone", "s": "1", "f": "1"}), id="no-definition"),
        pytest.param(with_definition(json.dumps([1, 2])), id="not-an-object"),
        pytest.param(lambda c, k: c.set(k, "a string"), id="wrongtype"),
        pytest.param(lambda c, k: c.hset(k, "r", "3"), id="tombstone"),
        pytest.param(lambda c, k: None, id="missing"),
    ],
)
def test_from_key_turns_every_failure_into_key_error(corrupt, redis_client):
    key = KEYS.entry("00000000-0000-0000-0000-000000000002")
    corrupt(redis_client, key)
    with pytest.raises(KeyError):
        TriggerEntry.from_key(key, app=app)


def test_from_key_reads_a_good_entry(every_ten_seconds):
    loaded = TriggerEntry.from_key(KEYS.entry(every_ten_seconds.pk), app=app)
    assert (loaded.slot, loaded.fire_at, loaded.observed.rev_raw) == (at(10), at(10), "1")
    assert loaded.is_due()[0] is False


def test_corrupt_and_raising_entries_do_not_stop_the_others(every_ten_seconds, redis_client, sent, caplog):
    bad = {
        "json": KEYS.entry("00000000-0000-0000-0000-00000000000a"),
        "type": KEYS.entry("00000000-0000-0000-0000-00000000000b"),
        "raises": KEYS.entry("00000000-0000-0000-0000-00000000000c"),
    }
    write_raw(redis_client, KEYS, bad["json"], definition="{")
    redis_client.set(bad["type"], "x")
    raising = EntryDefinition(
        "00000000-0000-0000-0000-00000000000c",
        timing.ScheduleSpec(kind="cron", cron_expression="*/10 * * * * *", timezone="Mars/Olympus"),
        0,
        6,
    )
    write_raw(
        redis_client,
        KEYS,
        bad["raises"],
        definition=raising.encoded,
        next_slot=epoch_text(at(10)),
        fire_at=epoch_text(at(10)),
    )
    redis_client.zadd(KEYS.schedule, {key: at(5).timestamp() for key in bad.values()})
    shared_once = Once()
    with caplog.at_level(logging.WARNING, logger="schedules.beat.dispatch"):
        for moment in (at(10.1), at(20.1)):
            bp = BeatPass(app=app, client=entries.redis_client(app), origin="schedule", once=shared_once)
            bp.run(bp.due_keys(moment)[0], moment)
    assert [f.slot for f in sent] == [at(10), at(20)], "the healthy trigger fired on time both times"
    for key in bad.values():
        assert sum(key in r.getMessage() for r in caplog.records) == 1, f"{key} logged once"
    assert redis_client.zscore(KEYS.schedule, bad["json"]) is None
    assert redis_client.zscore(KEYS.schedule, bad["type"]) is None
    parked = redis_client.zscore(KEYS.schedule, bad["raises"])
    assert parked >= at(10).timestamp() + QUARANTINE_SECONDS, "quarantined, not dropped"


# --- Compare-and-set ---------------------------------------------------------------------------------------


def test_an_edit_between_load_and_reserve_publishes_nothing(
    every_ten_seconds, frozen_clock, redis_client, committed, sent, monkeypatch
):
    original_load = BeatPass._load

    def load_then_edit(self, keys, result):
        loaded = original_load(self, keys, result)
        committed(services.trigger_update, trigger=every_ten_seconds, cron_expression="*/7 * * * * *")
        return loaded

    monkeypatch.setattr(BeatPass, "_load", load_then_edit)
    frozen_clock.set(at(10.1))
    assert run_pass(at(10.1)) == [], "12:00:10 is not a slot of the new schedule"
    stored = entry(redis_client, every_ten_seconds)
    assert stored["next_slot"] == "2026-03-02T12:00:14+00:00", (
        "the edit stands; the pass did not overwrite it"
    )


def test_a_delete_between_load_and_reserve_does_not_bring_the_entry_back(
    every_ten_seconds, redis_client, committed, sent, monkeypatch
):
    original_load = BeatPass._load

    def load_then_delete(self, keys, result):
        loaded = original_load(self, keys, result)
        committed(services.trigger_delete, trigger=every_ten_seconds)
        return loaded

    monkeypatch.setattr(BeatPass, "_load", load_then_delete)
    assert run_pass(at(10.1)) == []
    assert score(redis_client, every_ten_seconds) is None
    assert "next_slot" not in entry(redis_client, every_ten_seconds)


def test_two_syncs_racing_converge_on_the_newer_row(
    every_ten_seconds, frozen_clock, redis_client, committed, monkeypatch
):
    """Sync A has read Redis and the old row when an edit commits and its own sync B lands. A's write must
    not put the old schedule back: its compare-and-set fails and it retries from a fresh read."""
    original = sync.desired_entry
    raced: list[bool] = []

    def edit_in_between(trigger, observed, **kwargs):
        if not raced:
            raced.append(True)
            committed(services.trigger_update, trigger=every_ten_seconds, cron_expression="*/3 * * * * *")
        return original(trigger, observed, **kwargs)

    monkeypatch.setattr(sync, "desired_entry", edit_in_between)
    sync.sync_trigger(every_ten_seconds.pk)  # A: it has read the old row when the edit lands
    stored = entry(redis_client, every_ten_seconds)
    assert "*/3 * * * * *" in stored["definition"], "the newer row won"
    assert stored["next_slot"] == "2026-03-02T12:00:06+00:00"


def test_a_beat_without_the_lock_reserves_nothing_and_raises(every_ten_seconds, redis_client, sent):
    redis_client.set(KEYS.lock, "someone-else")
    with pytest.raises(LockLost):
        run_pass(at(10.1), token=b"mine")
    assert sent == []
    assert entry(redis_client, every_ten_seconds)["next_slot"] == "2026-03-02T12:00:10+00:00"
    redis_client.set(KEYS.lock, "mine")
    assert [f.slot for f in run_pass(at(10.1), token=b"mine")] == [at(10)]


def test_two_passes_racing_send_each_slot_once(every_ten_seconds, redis_client, sent):
    first, second = beat_pass(origin="tick"), beat_pass(origin="tick")
    due = first.due_keys(at(10.1))[0]
    assert second.due_keys(at(10.1))[0] == due
    fired = first.run(due, at(10.1)).fired + second.run(due, at(10.1)).fired
    assert [f.slot for f in fired] == [at(10)]


def test_a_beat_behind_by_many_slots_sends_the_latest_due_one(every_ten_seconds, redis_client, sent):
    fired = run_pass(at(3600 + 12))
    assert [f.slot for f in fired] == [at(3610)], "the fire task resolves the missed ones by catch-up policy"
    assert entry(redis_client, every_ten_seconds)["next_slot"] == "2026-03-02T13:00:20+00:00"


def test_a_once_trigger_leaves_the_schedule_after_its_slot(user, frozen_clock, redis_client, committed, sent):
    frozen_clock.set(at(0))
    trigger = committed(
        services.trigger_register, owner=user, name="o", workflow_id="wf", kind="once", run_at=at(30)
    )
    assert [f.slot for f in run_pass(at(30))] == [at(30)]
    assert score(redis_client, trigger) is None


def test_reconcile_keeps_a_one_off_that_fell_due_but_was_not_fired_yet(
    user, frozen_clock, redis_client, committed, sent
):
    frozen_clock.set(at(0))
    committed(services.trigger_register, owner=user, name="o", workflow_id="wf", kind="once", run_at=at(30))
    frozen_clock.set(at(30.4))  # run_at has passed; the beat's next tick has not come yet
    assert reconcile(app=app).changed is False
    assert [f.slot for f in run_pass(at(30.5))] == [at(30)], "still fired on time, not left to catch-up"


def test_fires_reach_the_broker_by_task_name_with_the_trigger_priority(
    user, frozen_clock, redis_client, committed
):
    frozen_clock.set(at(0))
    trigger = committed(
        services.trigger_register,
        owner=user,
        name="u",
        workflow_id="wf",
        cron_expression="*/10 * * * * *",
        priority="urgent",
    )
    assert len(run_pass(at(10))) == 1
    queues = [k.decode() for k in redis_client.keys("fire*")]
    assert queues == ["fire"], "on the fire queue; priority 0 is the bare queue name on the Redis transport"
    message = json.loads(redis_client.lindex("fire", 0))
    assert message["headers"]["task"] == "executions.fire_batch"
    fires = [[str(trigger.pk), "2026-03-02T12:00:10+00:00", "schedule"]]
    assert message["headers"]["argsrepr"] == repr([fires])


def test_a_herd_goes_out_in_batches_of_the_configured_size_one_priority_each(
    user, frozen_clock, redis_client, committed, settings
):
    settings.SCHEDULER_FIRE_BATCH_SIZE = 3
    frozen_clock.set(at(0))
    for n in range(7):
        committed(
            services.trigger_register,
            owner=user,
            name=f"h{n}",
            workflow_id="wf",
            cron_expression="*/10 * * * * *",
            priority="low" if n < 5 else "high",
        )
    assert len(run_pass(at(10))) == 7

    def batch_sizes(queue: str) -> list[int]:
        """Fires per message waiting in a priority list (kombu keeps the body base64-encoded JSON)."""
        bodies = [
            json.loads(base64.b64decode(json.loads(raw)["body"])) for raw in redis_client.lrange(queue, 0, -1)
        ]
        return sorted(len(args[0]) for args, _kwargs, _embed in bodies)

    assert batch_sizes("fire:9") == [2, 3], "five low-priority fires: batches of at most three"
    assert batch_sizes("fire:3") == [2], "the high-priority ones in a message of their own"


# --- Reconcile ----------------------------------------------------------------------------------------------


def test_reconcile_rebuilds_entries_after_flushdb(every_ten_seconds, redis_client, sent):
    expected = entry(redis_client, every_ten_seconds)
    redis_client.flushdb()
    report = reconcile(app=app)
    assert report.added == [str(every_ten_seconds.pk)]
    rebuilt = entry(redis_client, every_ten_seconds)
    assert {k: rebuilt[k] for k in ("definition", "next_slot", "fire_at")} == {
        k: expected[k] for k in ("definition", "next_slot", "fire_at")
    }
    assert reconcile(app=app).changed is False, "a second pass finds nothing to do"


def test_reconcile_removes_orphans_and_corrects_drift(every_ten_seconds, user, redis_client, committed, sent):
    orphan = KEYS.entry("00000000-0000-0000-0000-0000000000ff")
    write_raw(redis_client, KEYS, orphan, definition="{}")
    redis_client.zadd(KEYS.schedule, {orphan: 1, "stray-member": 1})
    redis_client.zadd(KEYS.schedule, {KEYS.entry(every_ten_seconds.pk): at(500).timestamp()})  # drifted score
    paused = committed(
        services.trigger_register, owner=user, name="p", workflow_id="wf", cron_expression="* * * * *"
    )
    Trigger.objects.filter(pk=paused.pk).update(status="paused")  # as if the sync after pausing was lost

    dry = reconcile(app=app, dry_run=True)
    assert sorted(dry.removed) == sorted(
        ["00000000-0000-0000-0000-0000000000ff", "stray-member", str(paused.pk)]
    )
    assert dry.corrected == [str(every_ten_seconds.pk)]
    assert redis_client.zscore(KEYS.schedule, orphan) == 1, "a dry run writes nothing"

    report = reconcile(app=app)
    assert sorted(report.removed) == sorted(dry.removed)
    assert report.corrected == dry.corrected
    assert redis_client.zscore(KEYS.schedule, orphan) is None
    assert redis_client.zscore(KEYS.schedule, "stray-member") is None
    assert score(redis_client, paused) is None
    assert score(redis_client, every_ten_seconds) == at(10).timestamp()


def test_reconcile_sends_the_latest_missed_slot_once(every_ten_seconds, frozen_clock, redis_client, sent):
    # The beat reserved 12:00:10 .. 12:00:30 but died before publishing any of them (nothing recorded).
    for moment in (at(10), at(20), at(30)):
        assert run_pass(moment)
    sent.clear()
    frozen_clock.set(at(30 + 60 + 1))  # past the default 60 s misfire grace of 12:00:30
    report = reconcile(app=app)
    assert [(f.slot, f.origin) for f in report.catchup] == [(at(30), "catchup")]
    assert [(f.slot, f.origin) for f in sent] == [(at(30), "catchup")]
    assert reconcile(app=app).catchup == [], "sent once, not on every pass"


def test_no_pass_sends_a_missed_slot_while_fires_are_in_flight(
    every_ten_seconds, frozen_clock, redis_client, sent
):
    """A slot whose fire is still queued (a herd outlasting the grace), or delivered and not acknowledged
    (acks are late: after the fire is recorded), looks missed only because its row is stale. Neither the
    full pass, the changed-since pass nor the audit sends it to catch-up then; once the fire queue is
    settled they do, once."""
    for moment in (at(10), at(20), at(30)):
        assert run_pass(moment)
    sent.clear()
    frozen_clock.set(at(30 + 60 + 1))  # past the grace of 12:00:30, as in the test above
    layout = broker.BrokerLayout.of_app()
    queued = layout.list_key(settings.SCHEDULER_FIRE_QUEUE, 6)
    redis_client.lpush(queued, "a fire batch waiting")
    report = reconcile(app=app)
    assert (report.catchup, report.deferred) == ([], 1)
    assert "1 missed slots deferred" in report.lines()[0]
    assert reconcile_changed(since=T0 - timedelta(days=1), app=app).catchup == []
    assert Audit(budget=1).step(app=app).catchup == []
    redis_client.delete(queued)
    delivered = json.dumps([{"body": "…"}, "", settings.SCHEDULER_FIRE_QUEUE])
    redis_client.hset(layout.unacked, "tag-1", delivered)  # as kombu delivers: the message and its time
    redis_client.zadd(layout.unacked_index, {"tag-1": time.time()})
    assert reconcile(app=app).catchup == [], "delivered to a worker, not acknowledged: still in flight"
    assert sent == []
    redis_client.hset(layout.unacked, "tag-1", json.dumps([{"body": "…"}, "", "launch"]))
    report = reconcile(app=app)
    assert [(f.slot, f.origin) for f in report.catchup] == [(at(30), "catchup")], "another queue's delivery"
    assert report.deferred == 0
    assert [(f.slot, f.origin) for f in sent] == [(at(30), "catchup")]


def test_a_fire_held_by_a_dead_worker_holds_catch_up_back_only_briefly(
    every_ten_seconds, frozen_clock, redis_client, sent
):
    """A worker killed holding a fire leaves it unacknowledged until the visibility timeout (an hour in
    production): past FIRE_DELIVERY_HORIZON it no longer counts as in flight, so other slots are caught up."""
    for moment in (at(10), at(20), at(30)):
        assert run_pass(moment)
    sent.clear()
    frozen_clock.set(at(30 + 60 + 1))
    layout = broker.BrokerLayout.of_app()
    redis_client.hset(layout.unacked, "tag-9", json.dumps([{"body": "…"}, "", settings.SCHEDULER_FIRE_QUEUE]))
    redis_client.zadd(layout.unacked_index, {"tag-9": time.time() - FIRE_DELIVERY_HORIZON - 1})
    report = reconcile(app=app)
    assert [(f.slot, f.origin) for f in report.catchup] == [(at(30), "catchup")]
    assert report.deferred == 0


def test_reconcile_leaves_slots_that_are_still_inside_their_grace(
    every_ten_seconds, frozen_clock, redis_client, sent
):
    assert run_pass(at(10))
    frozen_clock.set(at(30))
    assert reconcile(app=app).catchup == []


def test_sync_schedules_command_prints_counts_and_ids(every_ten_seconds, redis_client, sent, capsys):
    redis_client.flushdb()
    call_command("sync_schedules", "--dry-run")
    out = capsys.readouterr().out
    assert "dry run" in out
    assert "1 added" in out
    assert str(every_ten_seconds.pk) in out
    assert redis_client.zcard(KEYS.schedule) == 0
    call_command("sync_schedules")
    assert "1 added" in capsys.readouterr().out
    assert redis_client.zcard(KEYS.schedule) == 1


# --- Steady repair: what changed, and the slow audit -------------------------------------------------------


def test_the_changed_since_repair_fixes_a_lost_sync_and_reads_nothing_else(
    every_ten_seconds, user, redis_client, committed, sent
):
    """A pause whose after-commit sync never ran (outside `committed`, the callback is dropped) is one of
    the rows changed since the watermark; an entry dropped by hand with no write behind it is not, and is
    left to the audit."""
    other = committed(
        services.trigger_register, owner=user, name="o", workflow_id="wf", cron_expression="* * * * *"
    )
    since = datetime.now(UTC) - timedelta(seconds=1)
    Trigger.objects.filter(pk__in=[every_ten_seconds.pk, other.pk]).update(
        updated_at=since - timedelta(hours=1)
    )
    redis_client.delete(KEYS.entry(other.pk))
    redis_client.zrem(KEYS.schedule, KEYS.entry(other.pk))
    services.trigger_pause(trigger=every_ten_seconds, reason="sync lost")  # bumps updated_at, no sync

    report = reconcile_changed(since=since, app=app)
    assert report.removed == [str(every_ten_seconds.pk)]
    assert score(redis_client, every_ten_seconds) is None
    assert score(redis_client, other) is None, "unchanged rows are not read: the audit's to find"
    assert redis_client.get(KEYS.watermark) is not None

    audit = Audit(budget=1.0)
    while audit.rounds == 0:
        audit.step(app=app)
    assert score(redis_client, other) is not None, "the audit puts back what no write explains"


def test_the_audit_removes_orphans_from_the_schedule_in_slices(every_ten_seconds, redis_client, sent):
    orphans = [KEYS.entry(f"00000000-0000-0000-0000-{n:012d}") for n in range(5)]
    for key in orphans:
        write_raw(redis_client, KEYS, key, definition="{}")
        redis_client.zadd(KEYS.schedule, {key: 1})
    audit = Audit(budget=1.0, rows=2)
    steps = 0
    while audit.rounds == 0:
        audit.step(app=app)
        steps += 1
    assert steps >= 3, "the schedule is read a slice at a time"
    assert all(redis_client.zscore(KEYS.schedule, key) is None for key in orphans)
    assert score(redis_client, every_ten_seconds) is not None, "a live entry stays"


def test_the_audit_keeps_to_its_cpu_budget(every_ten_seconds, sent):
    audit = Audit(budget=0.01)
    audit.step(app=app)
    assert not audit.due(), "after a slice of d seconds the next waits d / budget"


def test_a_full_reconcile_marks_the_build_and_the_watermark(every_ten_seconds, redis_client, sent):
    redis_client.delete(KEYS.built, KEYS.watermark)
    reconcile(app=app, dry_run=True)
    assert redis_client.get(KEYS.built) is None, "a dry run marks nothing"
    reconcile(app=app)
    assert redis_client.get(KEYS.built) is not None
    assert redis_client.get(KEYS.watermark) is not None


# --- Messages: what the beat publishes is what send_task would send ---------------------------------------


def _raw_messages(client: redis.Redis, queues: list[str]) -> list[dict]:
    """Every message waiting in `queues`, in order, emptied after reading (one list per priority)."""
    messages = []
    for queue in queues:
        messages += [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
        client.delete(queue)
    return messages


def _comparable(message: dict) -> dict:
    """A message as a worker sees it: the body decoded; delivery_tag is the transport's per-copy tag."""
    properties = {k: v for k, v in message["properties"].items() if k != "delivery_tag"}
    body = json.loads(base64.b64decode(message["body"]))
    rest = {k: v for k, v in message.items() if k not in ("properties", "body")}
    return {**rest, "properties": properties, "body": body}


@pytest.mark.parametrize("size", [1, 40])
def test_hand_built_fire_messages_equal_what_send_task_sends(redis_client, settings, size: int) -> None:
    """`dispatch.publish` builds its messages from one Celery template (toolkit.broker) instead of calling
    `send_task` per message. A worker must not be able to tell: same headers, properties and body as
    `app.send_task` gives for the same task, arguments, priority and queue (only the task id is new)."""
    settings.SCHEDULER_FIRE_BATCH_SIZE = 200
    fires = [
        Fire(f"00000000-0000-0000-0000-{i:012d}", at(i), priority, "schedule")
        for priority in (0, 6)
        for i in range(size)
    ]
    queues = ["fire", "fire:6"]
    dispatch.publish(app, fires)
    ours = _raw_messages(redis_client, queues)
    assert len(ours) == 2
    for message, priority in zip(ours, (0, 6), strict=True):
        batch = [[f.trigger_id, iso(f.slot), f.origin] for f in fires if f.priority == priority]
        app.send_task(
            dispatch.FIRE_BATCH_TASK, args=[batch], priority=priority, task_id=message["headers"]["id"]
        )
        (theirs,) = _raw_messages(redis_client, queues)
        mine, celerys = _comparable(message), _comparable(theirs)
        for part in ("headers", "properties", "body"):
            assert mine.pop(part) == celerys.pop(part), part
        assert mine == celerys


# --- Compact entries: shared definitions, layout upgrades -------------------------------------------------


def test_triggers_on_one_schedule_share_one_definition_until_the_last_goes(
    every_ten_seconds, user, redis_client, committed, sent
):
    twin = committed(
        services.trigger_register, owner=user, name="twin", workflow_id="wf", cron_expression="*/10 * * * * *"
    )
    ref = redis_client.hget(KEYS.entry(twin.pk), "d")
    assert ref == redis_client.hget(KEYS.entry(every_ten_seconds.pk), "d"), "one definition, referred twice"
    assert redis_client.hlen(KEYS.definitions) == 1
    assert redis_client.hget(KEYS.references, ref) == b"2"
    assert redis_client.object("encoding", KEYS.entry(twin.pk)) == b"listpack", "a small hash, no JSON"
    committed(services.trigger_update, trigger=twin, priority="urgent")  # another definition
    assert redis_client.hget(KEYS.references, ref) == b"1"
    assert redis_client.hlen(KEYS.definitions) == 2
    committed(services.trigger_delete, trigger=twin)
    committed(services.trigger_delete, trigger=every_ten_seconds)
    assert redis_client.hlen(KEYS.definitions) == 0, "the last entry out takes its definition along"
    assert redis_client.hlen(KEYS.references) == 0


def test_one_offs_share_one_definition_and_each_fires_at_its_own_run_at(
    user, frozen_clock, redis_client, committed, sent
):
    frozen_clock.set(at(0))
    register = functools.partial(
        committed, services.trigger_register, owner=user, workflow_id="wf", kind="once"
    )
    first, second = register(name="a", run_at=at(30)), register(name="b", run_at=at(40))
    assert redis_client.hlen(KEYS.definitions) == 1, "run_at lives in each entry's slot, not its definition"
    assert "run_at" not in entry(redis_client, first)["definition"]
    assert reconcile(app=app).changed is False, "the shared form is what reconcile expects"
    committed(services.trigger_update, trigger=Trigger.objects.get(pk=second.pk), run_at=at(50))
    assert entry(redis_client, second)["next_slot"] == iso(at(50)), "a moved run_at moves the slot"
    assert reconcile(app=app).changed is False
    assert [(f.trigger_id, f.slot) for f in run_pass(at(45))] == [(str(first.pk), at(30))]
    assert [(f.trigger_id, f.slot) for f in run_pass(at(50))] == [(str(second.pk), at(50))]


def test_a_one_off_stored_with_its_run_at_inside_is_rewritten_shared(
    user, frozen_clock, redis_client, committed, sent
):
    frozen_clock.set(at(0))
    trigger = committed(
        services.trigger_register, owner=user, name="o", workflow_id="wf", kind="once", run_at=at(30)
    )
    key = KEYS.entry(trigger.pk)
    old = json.loads(entry(redis_client, trigger)["definition"]) | {"run_at": iso(at(30))}
    write_raw(
        redis_client,
        KEYS,
        key,
        definition=json.dumps(old),
        next_slot=epoch_text(at(30)),
        fire_at=epoch_text(at(30)),
    )
    assert TriggerEntry.from_key(key, app=app).definition.spec.run_at == at(30), "the old form still reads"
    assert reconcile(app=app).corrected == [str(trigger.pk)]
    assert "run_at" not in entry(redis_client, trigger)["definition"]
    assert [f.slot for f in run_pass(at(30))] == [at(30)]


def test_a_leader_finding_the_old_layout_rebuilds_and_drops_its_entries(
    every_ten_seconds, redis_client, sent
):
    """Layout 1 kept `<prefix>:trigger:<uuid>` hashes with inline JSON. A leader that finds no layout 2 in
    Redis deletes them before anything fires and rebuilds every entry, then fires as ever."""
    legacy = f"{KEYS.prefix}:trigger:{every_ten_seconds.pk}"
    redis_client.delete(KEYS.entry(every_ten_seconds.pk), KEYS.layout)
    redis_client.zrem(KEYS.schedule, KEYS.entry(every_ten_seconds.pk))
    redis_client.hset(legacy, mapping={"definition": "{}", "next_slot": "2026-03-02T12:00:10+00:00"})
    redis_client.zadd(KEYS.schedule, {legacy: at(10).timestamp()})
    report = reconcile(app=app)
    assert report.added == [str(every_ten_seconds.pk)]
    assert not redis_client.exists(legacy)
    assert redis_client.zrange(KEYS.schedule, 0, -1) == [KEYS.entry(every_ten_seconds.pk).encode()]
    assert redis_client.get(KEYS.layout) == LAYOUT.encode()
    assert [f.slot for f in run_pass(at(10.1))] == [at(10)]


def test_every_beat_key_hashes_to_one_cluster_slot(every_ten_seconds) -> None:
    """The default prefix is a hash tag, so every script's keys (entries, schedule, lock, definitions) sit in
    one slot of a Redis Cluster."""
    names = [
        KEYS.entry(every_ten_seconds.pk), KEYS.schedule, KEYS.lock, KEYS.definitions, KEYS.references,
        KEYS.stats, KEYS.layout, KEYS.built, KEYS.watermark, KEYS.housekeeping("executions.sweep"),
    ]  # fmt: skip
    assert KEYS.prefix == "{redbeat}"
    assert {key_slot(name.encode()) for name in names} == {key_slot(b"redbeat")}
