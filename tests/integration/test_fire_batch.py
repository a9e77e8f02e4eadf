"""The batch fire path against the real database: a batch of fires records exactly the rows that the same
fires recorded one after another would — same statuses, skip reasons, origins and trigger counters — over
random mixes of triggers, policies, owner limits, runs already going, duplicates and late fires; and it
does so in a bounded number of statements whatever the batch's size."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executions import services
from executions.models import Execution, ExecutionOrigin, ExecutionStatus
from schedules import services as trigger_services
from schedules.models import Trigger

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EVERY_TEN = "*/10 * * * * *"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Rollback(Exception):
    """Leave the world a scenario built: every scenario starts from the same empty tables."""


trigger_specs = st.fixed_dictionaries(
    {
        "owner": st.integers(0, 1),
        "overlap_policy": st.sampled_from(["allow", "skip", "queue", "buffer_one", "replace"]),
        "catchup_policy": st.sampled_from(["none", "latest", "fire_immediately", "spread"]),
        "max_runs": st.sampled_from([None, 1, 2, 4]),
        "end_at": st.sampled_from([None, 35, 55]),
        "paused": st.booleans(),
        "deleted": st.booleans(),
        "running": st.integers(0, 2),  # runs already going (manual, no slot)
        "misfire_grace_seconds": st.sampled_from([5, 60]),
        "catchup_window_seconds": st.sampled_from([15, 3600]),
    }
)

scenarios = st.fixed_dictionaries(
    {
        "triggers": st.lists(trigger_specs, min_size=1, max_size=5),
        "owner_limit": st.sampled_from([0, 1, 2, 3]),
        "now": st.sampled_from([10.2, 31, 65]),
        # (trigger index, slot number): slots are T0 + 10 s·k; repeats are duplicate fires, an index past the
        # list a fire for an unknown trigger, odd seconds not a slot of the schedule at all.
        "fires": st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from([1, 2, 3, 4, 5, 6, 2.5])), min_size=1, max_size=12
        ),
    }
)


def build(scenario: dict[str, Any], owners: list[Any]) -> list[Trigger]:
    """The same world every time: fixed trigger ids, registered at T0, the runs already going."""
    triggers = []
    for n, spec in enumerate(scenario["triggers"]):
        trigger = trigger_services.trigger_register(
            owner=owners[spec["owner"]],
            id=uuid.UUID(int=n + 1),
            name=f"t{n}",
            workflow_id="wf",
            cron_expression=EVERY_TEN,
            overlap_policy=spec["overlap_policy"],
            catchup_policy=spec["catchup_policy"],
            max_runs=spec["max_runs"],
            end_at=at(spec["end_at"]) if spec["end_at"] else None,
            misfire_grace_seconds=spec["misfire_grace_seconds"],
            catchup_window_seconds=spec["catchup_window_seconds"],
            paused=spec["paused"],
        )
        for _ in range(spec["running"]):
            Execution.objects.create(
                trigger=trigger, origin=ExecutionOrigin.MANUAL, status=ExecutionStatus.RUNNING, started_at=T0
            )
        if spec["deleted"]:
            trigger_services.trigger_delete(trigger=trigger)
        triggers.append(trigger)
    return triggers


def fires_of(scenario: dict[str, Any]) -> list[services.Fire]:
    return [
        services.Fire(
            trigger_id=uuid.UUID(int=index + 1), slot=at(10 * k), origin="schedule", launched_by="beat"
        )
        for index, k in scenario["fires"]
    ]


def snapshot() -> dict[str, Any]:
    """Everything a fire decides, without what is random by nature (ids, wall-clock stamps, task ids)."""
    rows = sorted(
        (str(e.trigger_id), e.slot, e.status, e.skip_reason, e.origin, e.not_before, e.fire_at, e.error)
        for e in Execution.objects.filter(slot__isnull=False)
    )
    manual = sorted(
        (str(e.trigger_id), e.status, e.error) for e in Execution.objects.filter(slot__isnull=True)
    )
    triggers = sorted(
        (str(t.pk), t.last_slot, t.run_count, t.last_status, t.next_run_at, t.status, t.failure_count)
        for t in Trigger.objects.all()
    )
    return {"rows": rows, "manual": manual, "triggers": triggers}


def run(scenario: dict[str, Any], owners: list[Any], clock: Any, *, batch: bool) -> tuple[dict, list]:
    result: dict[str, Any] = {}
    try:
        with transaction.atomic():
            clock.set(T0)
            build(scenario, owners)
            clock.set(at(scenario["now"]))
            fires = fires_of(scenario)
            if batch:
                created = services.execution_fire_batch(fires=fires)
            else:
                created = [
                    row
                    for fire in fires
                    for row in services.execution_fire(
                        trigger_id=fire.trigger_id,
                        slot=fire.slot,
                        origin=fire.origin,
                        launched_by=fire.launched_by,
                    )
                ]
            result = snapshot()
            returned = sorted((str(e.trigger_id), e.slot, e.status) for e in created)
            raise Rollback
    except Rollback:
        pass
    return result, returned


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
def test_a_batch_records_what_the_same_fires_one_by_one_record(
    scenario, frozen_clock, settings, user, other_user
):
    settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER = scenario["owner_limit"]
    owners = [user, other_user]
    one_by_one = run(scenario, owners, frozen_clock, batch=False)
    batched = run(scenario, owners, frozen_clock, batch=True)
    assert batched == one_by_one


def test_the_scenarios_reach_every_kind_of_decision(frozen_clock, settings, user, other_user):
    """The property above is only as good as its scenarios: one hand-made mix that makes every decision."""
    settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER = 2
    base = {"overlap_policy": "allow", "catchup_policy": "latest", "max_runs": None, "end_at": None,
            "paused": False, "deleted": False, "running": 0, "misfire_grace_seconds": 60,
            "catchup_window_seconds": 3600, "owner": 0}  # fmt: skip
    scenario = {
        "triggers": [
            {**base},
            {**base, "overlap_policy": "skip", "running": 1},
            {**base, "overlap_policy": "queue", "running": 1, "owner": 1},
            {**base, "paused": True, "owner": 1},
            {**base, "catchup_policy": "none", "misfire_grace_seconds": 5, "owner": 1},
            {
                **base,
                "max_runs": 1,
                "catchup_policy": "fire_immediately",
                "misfire_grace_seconds": 5,
                "owner": 1,
            },
        ],
        "owner_limit": 2,
        "now": 31,
        "fires": [(0, 3), (0, 3), (1, 3), (2, 3), (3, 3), (4, 3), (4, 2.5), (5, 3), (7, 3)],
    }
    state, returned = run(scenario, [user, other_user], frozen_clock, batch=True)
    statuses = {status for _trigger, _slot, status, *_ in state["rows"]}
    reasons = {reason for *_, reason, _origin, _nb, _fa, _err in state["rows"] if reason}
    assert {"queued", "skipped", "waiting"} <= statuses  # a run due now goes in queued under its message
    assert {"overlap", "paused", "catchup_none"} <= reasons
    assert not reasons & {"limit_reached", "completed"}, "slots after the end record nothing"
    assert len(returned) == len(state["rows"]), "duplicates, an unknown trigger, a non-slot: nothing"


AFTER_END_BASE = {"overlap_policy": "allow", "catchup_policy": "latest", "max_runs": 2, "end_at": None,
                  "paused": False, "deleted": False, "running": 0, "misfire_grace_seconds": 60,
                  "catchup_window_seconds": 3600, "owner": 0}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "now", "fires", "expected"),
    [
        pytest.param(
            {}, 65, [(0, k) for k in (1, 2, 3, 4, 5, 6)], [(1, "queued", ""), (2, "queued", "")],
            id="max-runs-2-fires-queued-behind-the-completing-run",
        ),
        pytest.param(
            {"overlap_policy": "queue", "running": 1}, 65, [(0, k) for k in (1, 2, 3, 4, 5, 6)],
            [(1, "waiting", ""), (2, "waiting", "")],
            id="max-runs-2-queue-waiting-slots-count",
        ),
        pytest.param(
            {"overlap_policy": "skip", "running": 1}, 65, [(0, k) for k in (1, 2, 3)],
            [(1, "skipped", "overlap"), (2, "skipped", "overlap"), (3, "skipped", "overlap")],
            id="max-runs-2-overlap-skips-are-not-runs",
        ),
        pytest.param(
            {"catchup_policy": "fire_immediately", "misfire_grace_seconds": 5}, 65, [(0, 1), (0, 6)],
            [(1, "queued", ""), (2, "queued", "")], id="max-runs-2-catch-up-stops-at-the-limit",
        ),
        pytest.param(
            {"max_runs": None, "end_at": 35, "catchup_policy": "none", "misfire_grace_seconds": 5}, 31,
            [(0, 5), (0, 3), (0, 6), (0, 4)],
            [(1, "skipped", "catchup_none"), (2, "skipped", "catchup_none"), (3, "queued", "")],
            id="end-at-slots-past-it-record-nothing",
        ),
        pytest.param(
            {"max_runs": None, "end_at": 35, "paused": True}, 65, [(0, 3), (0, 4), (0, 5)],
            [(1, "skipped", "paused"), (2, "skipped", "paused"), (3, "skipped", "paused")],
            id="end-at-paused-past-it-records-nothing",
        ),
    ],
)  # fmt: skip
def test_no_rows_after_the_end_one_by_one_and_in_a_batch(
    frozen_clock, settings, user, other_user, changes, now, fires, expected
):
    """The cases of issue #19 item 8, held to exact rows on both paths."""
    settings.SCHEDULER_MAX_CONCURRENT_PER_OWNER = 0
    scenario = {"triggers": [{**AFTER_END_BASE, **changes}], "owner_limit": 0, "now": now, "fires": fires}
    one_by_one = run(scenario, [user, other_user], frozen_clock, batch=False)
    batched = run(scenario, [user, other_user], frozen_clock, batch=True)
    assert batched == one_by_one
    state, _returned = batched
    got = [
        (int((slot - T0).total_seconds() // 10), status, reason)
        for _t, slot, status, reason, *_ in state["rows"]
    ]
    assert got == expected


def test_a_batch_costs_a_bounded_number_of_statements(frozen_clock, user):
    """Lock, duplicate check, counts, the owners' credit standing, insert, insert check, trigger update: the
    same handful of statements for 5 fires as for 100 (a savepoint or two around them)."""
    frozen_clock.set(T0)
    triggers = [
        trigger_services.trigger_register(
            owner=user, name=f"h{n}", workflow_id="wf", cron_expression=EVERY_TEN
        )
        for n in range(105)
    ]
    frozen_clock.set(at(10.3))
    for batch in (triggers[:5], triggers[5:]):
        with CaptureQueriesContext(connection) as queries:
            created = services.execution_fire_batch(fires=[services.Fire(t.pk, at(10)) for t in batch])
        assert [e.status for e in created] == [ExecutionStatus.QUEUED] * len(batch)
        assert len(queries) <= 11, "\n".join(q["sql"][:150] for q in queries)
    assert Trigger.objects.filter(run_count=1, last_slot=at(10), next_run_at=at(20)).count() == 105
