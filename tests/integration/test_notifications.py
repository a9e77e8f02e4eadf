"""Notifications against the real database and Redis (the subscribed-kinds cache, the broker in eager mode):
every event kind reaches its subscribers once per window; email through Django's locmem backend; webhooks to
a real HTTP server on 127.0.0.1 (allowed by an explicit operator setting), signed with the launches' scheme,
retried on 500, refused at send time when the address is private; owner isolation; and a fire batch that
nobody listens to costs no query more than one with no notifications app at all."""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from executions import signing
from executions.models import Execution, ExecutionStatus
from executions.services import Fire, execution_complete, execution_fire, execution_fire_batch
from notifications import listener, services, webhooks
from notifications.models import Delivery, DeliveryStatus, Subscription
from scheduler_project.celery import app
from schedules import services as trigger_services
from schedules.models import Trigger
from tests.integration.test_api_plumbing import (  # noqa: F401 - api_test_defaults is an autouse fixture
    api_test_defaults,
    client_for,
)
from tests.support.receiver import Receiver
from toolkit import events

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WINDOW = 600
SUBSCRIPTIONS = "/api/v1/notifications/subscriptions/"
DELIVERIES = "/api/v1/notifications/deliveries/"


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


# --- Fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def notify_settings(settings, redis_client) -> Iterator[None]:
    """The operator allows 127.0.0.1 explicitly (host and network); tasks run eagerly, in this process."""
    settings.SCHEDULER_NOTIFY_WEBHOOK_HOSTS = ["127.0.0.1", "*.hooks.test"]
    settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.SCHEDULER_NOTIFY_WINDOW_SECONDS = WINDOW
    settings.SCHEDULER_NOTIFY_MAX_ATTEMPTS = 3
    settings.SCHEDULER_NOTIFY_TIMEOUT_SECONDS = 5
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    cache.clear()
    app.conf.task_always_eager = True  # a retry runs again at once (its countdown is a worker's business)
    yield
    app.conf.task_always_eager = False


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw", email="alice@example.com")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user(username="bob", password="pw", email="bob@example.com")


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a block and then what it left for after commit (events, routes, sends), as a worker would."""

    def run(action, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return action(*args, **kwargs)

    return run


@pytest.fixture
def make(alice, frozen_clock, committed):
    frozen_clock.set(T0 - timedelta(seconds=30))

    def build(**fields) -> Trigger:
        values = {"name": "nightly-etl", "workflow_id": "etl", "cron_expression": "* * * * *", **fields}
        return committed(trigger_services.trigger_register, owner=alice, **values)

    return build


def subscribe(owner, committed, **fields) -> Subscription:
    return committed(services.subscription_create, owner=owner, **{"channel": "email", **fields})


def end_run(trigger: Trigger, n: int, status: str, frozen_clock, committed) -> None:
    """Fire slot `n` and report its end, each step committed."""
    frozen_clock.set(minute(n))
    rows = committed(execution_fire, trigger_id=trigger.pk, slot=minute(n))
    (execution,) = [row for row in rows if row.slot == minute(n)]
    Execution.objects.filter(pk=execution.pk).update(status=ExecutionStatus.RUNNING, started_at=minute(n))
    frozen_clock.set(minute(n) + timedelta(seconds=20))
    committed(execution_complete, execution=execution, status=status, error="exit 3: disk full")


def deliveries(**filters) -> list[Delivery]:
    return list(Delivery.objects.filter(**filters).order_by("created_at"))


# --- Each event kind, once per window -----------------------------------------------------------------------

F, S = ExecutionStatus.FAILED, ExecutionStatus.SUCCEEDED


def _ends(statuses):
    def produce(trigger, start, frozen_clock, committed):
        for i, status in enumerate(statuses):
            end_run(trigger, start + i, status, frozen_clock, committed)
        return start + len(statuses)

    return produce


def _paused_slots(trigger, start, frozen_clock, committed):
    committed(trigger_services.trigger_pause, trigger=Trigger.objects.get(pk=trigger.pk), reason="maint")
    for n in (start, start + 1):
        frozen_clock.set(minute(n))
        committed(execution_fire, trigger_id=trigger.pk, slot=minute(n))
    committed(trigger_services.trigger_resume, trigger=Trigger.objects.get(pk=trigger.pk))
    return start + 2


def _missed_slots(trigger, start, frozen_clock, committed):
    """The fleet was down for five slots: catch-up (policy none) records them missed, twice."""
    for n in (start + 5, start + 10):
        frozen_clock.set(minute(n))
        committed(execution_fire, trigger_id=trigger.pk, slot=minute(n))
    return start + 11


def _auto_pauses(trigger, start, frozen_clock, committed):
    for n in (start, start + 1):
        end_run(trigger, n, F, frozen_clock, committed)  # auto_pause_after_failures=1: paused at once
        committed(trigger_services.trigger_resume, trigger=Trigger.objects.get(pk=trigger.pk))
    return start + 2


KINDS = [
    pytest.param("failed", {}, {}, _ends([F, F]), id="failed"),
    pytest.param("failures", {"threshold": 2}, {}, _ends([F, F, F, S, F, F]), id="failures-2"),
    pytest.param("recovered", {}, {}, _ends([F, S, F, S]), id="recovered"),
    pytest.param("auto_paused", {}, {"auto_pause_after_failures": 1}, _auto_pauses, id="auto-paused"),
    pytest.param("skipped", {"skip_reasons": ["paused"]}, {}, _paused_slots, id="skipped-paused"),
    pytest.param("missed", {}, {"catchup_policy": "none"}, _missed_slots, id="missed"),
]


@pytest.mark.parametrize(("kind", "sub_fields", "trigger_fields", "produce"), KINDS)
def test_each_event_kind_is_notified_once_per_window(
    kind, sub_fields, trigger_fields, produce, make, alice, frozen_clock, committed, mailoutbox
):
    trigger = make(overlap_policy="allow", **trigger_fields)
    subscribe(alice, committed, trigger=trigger.pk, event=kind, **sub_fields)
    subscribe(alice, committed, event="recovered" if kind != "recovered" else "failed")  # another kind

    n = produce(trigger, 0, frozen_clock, committed)
    (first,) = deliveries(event=kind)
    assert (first.status, first.attempts, first.destination) == (
        DeliveryStatus.DELIVERED,
        1,
        "alice@example.com",
    )
    assert [m.to for m in mailoutbox if m.subject == first.payload["subject"]] == [["alice@example.com"]]
    assert first.payload["subject"].startswith("[scheduler] nightly-etl: ")

    frozen_clock.set(frozen_clock.now() + timedelta(seconds=WINDOW + 60))
    base = int((frozen_clock.now() - T0).total_seconds() // 60) + 1
    produce(trigger, max(n, base), frozen_clock, committed)
    assert len(deliveries(event=kind)) == 2, "a new window, a new notification"


def test_a_skipped_subscription_hears_only_its_reasons(make, alice, frozen_clock, committed):
    trigger = make()
    subscribe(alice, committed, event="skipped", skip_reasons=["overlap"])
    _paused_slots(trigger, 0, frozen_clock, committed)
    assert deliveries() == []


def test_an_owner_wide_subscription_hears_every_trigger_of_the_owner_only(
    make, alice, bob, frozen_clock, committed, mailoutbox
):
    mine, also_mine = make(name="a"), make(name="b")
    theirs = committed(
        trigger_services.trigger_register, owner=bob, name="c", workflow_id="w", cron_expression="* * * * *"
    )
    subscribe(alice, committed, event="failed")
    for i, trigger in enumerate((mine, also_mine, theirs)):
        end_run(trigger, i, F, frozen_clock, committed)
    assert sorted(d.trigger.name for d in deliveries()) == ["a", "b"]
    assert "exit 3: disk full" in mailoutbox[0].body


def test_auto_pause_notifies_with_the_pause_note(make, alice, frozen_clock, committed, mailoutbox):
    trigger = make(auto_pause_after_failures=2, overlap_policy="allow")
    subscribe(alice, committed, trigger=trigger.pk, event="auto_paused")
    end_run(trigger, 0, F, frozen_clock, committed)
    assert deliveries() == []
    end_run(trigger, 1, ExecutionStatus.TIMED_OUT, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (
        delivery.payload["subject"]
        == "[scheduler] nightly-etl: auto-paused (paused after 2 consecutive failures)"
    )


# --- Webhooks -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slack", [False, True], ids=["event-body", "slack-body"])
def test_a_webhook_is_signed_like_a_launch(slack, make, alice, frozen_clock, committed, receiver):
    trigger = make()
    subscription = subscribe(
        alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=receiver.url, slack=slack
    )
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.response_code) == (DeliveryStatus.DELIVERED, 200)
    ((headers, body),) = receiver.requests
    signing.verify(headers["x-scheduler-signature"], body, secret=subscription.secret, now=frozen_clock.now())
    with pytest.raises(signing.SignatureError):
        signing.verify(
            headers["x-scheduler-signature"], body + b" ", secret=subscription.secret, now=frozen_clock.now()
        )
    assert (headers["x-scheduler-event"], headers["x-scheduler-delivery"]) == ("failed", str(delivery.pk))
    document = json.loads(body)
    if slack:
        assert list(document) == ["text"]
        assert document["text"].startswith("[scheduler] nightly-etl: a run failed")
    else:
        assert document["event"] == "failed"
        assert document["trigger"] == {"id": str(trigger.pk), "name": "nightly-etl", "workflow_id": "etl"}
        assert (document["failures"], document["error"], document["delivery"]) == (
            1,
            "exit 3: disk full",
            str(delivery.pk),
        )


def test_a_webhook_answering_500_is_retried_until_it_succeeds(make, alice, frozen_clock, committed, receiver):
    receiver.statuses = [500, 503, 200]
    trigger = make()
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=receiver.url)
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.last_error) == (
        DeliveryStatus.DELIVERED,
        3,
        200,
        "",
    )
    assert len(receiver.requests) == 3
    assert len({h["x-scheduler-delivery"] for h, _b in receiver.requests}) == 1, (
        "one delivery id on every try"
    )


def test_a_webhook_that_keeps_failing_gives_up_after_the_attempts(
    make, alice, frozen_clock, committed, receiver
):
    receiver.statuses = [500]
    trigger = make()
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=receiver.url)
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code) == (DeliveryStatus.FAILED, 3, 500)
    assert delivery.last_error.startswith("HTTP 500")
    assert len(receiver.requests) == 3


def test_a_4xx_is_not_retried(make, alice, frozen_clock, committed, receiver):
    receiver.statuses = [410]
    trigger = make()
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=receiver.url)
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code) == (DeliveryStatus.FAILED, 1, 410)


def test_a_private_address_is_refused_at_send_time(make, alice, frozen_clock, committed, receiver, settings):
    trigger = make()
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=receiver.url)
    settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS = []  # the operator withdrew 127.0.0.1
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.REFUSED, 1)
    assert "127.0.0.1" in delivery.last_error
    assert "private" in delivery.last_error
    assert receiver.requests == []


def test_a_name_that_rebinds_to_loopback_is_refused_at_send_time(
    make, alice, frozen_clock, committed, receiver, settings, monkeypatch
):
    """DNS rebinding: public when the subscription was checked, 127.0.0.1 when the notification goes."""
    settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS = []
    answers = iter([[ipaddress.ip_address("93.184.216.34")], [ipaddress.ip_address("127.0.0.1")]])
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: next(answers))
    trigger = make()
    port = receiver.server.server_address[1]
    url = f"http://rebind.hooks.test:{port}/hook"
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=url)
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert delivery.status == DeliveryStatus.REFUSED
    assert "resolves to 127.0.0.1" in delivery.last_error
    assert receiver.requests == []


def test_the_connection_goes_to_the_checked_address(
    make, alice, frozen_clock, committed, receiver, monkeypatch
):
    """The name is resolved once, checked, and the socket opened to that address (Host stays the name)."""
    trigger = make()
    port = receiver.server.server_address[1]
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: [ipaddress.ip_address("127.0.0.1")])
    url = f"http://receiver.hooks.test:{port}/hook"
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=url)
    end_run(trigger, 0, F, frozen_clock, committed)
    assert deliveries()[0].status == DeliveryStatus.DELIVERED
    ((headers, _body),) = receiver.requests
    assert headers["host"] == f"receiver.hooks.test:{port}"


def test_an_address_that_does_not_answer_falls_back_to_the_next_checked_one(
    make, alice, frozen_clock, committed, receiver, monkeypatch, settings
):
    settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS = ["127.0.0.1/32", "::1/128"]
    both = [ipaddress.ip_address("::1"), ipaddress.ip_address("127.0.0.1")]  # the receiver is IPv4 only
    monkeypatch.setattr(webhooks, "resolve", lambda host, port: both)
    trigger = make()
    url = f"http://dual.hooks.test:{receiver.server.server_address[1]}/hook"
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=url)
    end_run(trigger, 0, F, frozen_clock, committed)
    assert (deliveries()[0].status, len(receiver.requests)) == (DeliveryStatus.DELIVERED, 1)


def test_a_receiver_that_is_down_is_retried_then_given_up(make, alice, frozen_clock, committed):
    closed = Receiver()  # bound, never serving: then closed, so its port refuses connections
    url = closed.url
    closed.server.server_close()
    trigger = make()
    subscribe(alice, committed, trigger=trigger.pk, event="failed", channel="webhook", url=url)
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    assert (delivery.status, delivery.attempts, delivery.response_code) == (DeliveryStatus.FAILED, 3, None)
    assert delivery.last_error.startswith("ConnectionRefusedError")


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        pytest.param("93.184.216.34", True, id="public-v4"),
        pytest.param("2606:2800:220:1:248:1893:25c8:1946", True, id="public-v6"),
        pytest.param("127.0.0.2", False, id="loopback"),
        pytest.param("10.1.2.3", False, id="private-10"),
        pytest.param("192.168.0.1", False, id="private-192"),
        pytest.param("169.254.169.254", False, id="link-local-metadata"),
        pytest.param("100.64.0.1", False, id="cgnat"),
        pytest.param("::1", False, id="loopback-v6"),
        pytest.param("fe80::1", False, id="link-local-v6"),
        pytest.param("::ffff:10.0.0.1", False, id="v4-mapped-private"),
        pytest.param("0.0.0.0", False, id="unspecified"),  # noqa: S104 - an address judged, not bound
        pytest.param("127.0.0.1", True, id="operator-allowed-loopback"),
    ],
)
def test_which_addresses_a_webhook_may_reach(address, allowed):
    assert webhooks.address_allowed(ipaddress.ip_address(address)) is allowed


# --- The API ------------------------------------------------------------------------------------------------


def test_subscriptions_crud_and_the_delivery_log(make, alice, frozen_clock, committed, receiver):
    trigger = make()
    api = client_for(alice)
    body = {"trigger": str(trigger.pk), "event": "failed", "channel": "webhook", "url": receiver.url}
    created = api.post(SUBSCRIPTIONS, body, format="json")
    assert created.status_code == 201, created.content
    data = created.json()
    assert (data["trigger"], data["event"], data["url"], data["active"]) == (
        str(trigger.pk),
        "failed",
        receiver.url,
        True,
    )
    assert len(data["secret"]) >= 32
    sid = data["id"]
    changed = api.patch(f"{SUBSCRIPTIONS}{sid}/", {"slack": True}, format="json")
    assert changed.status_code == 200
    assert changed.json()["slack"] is True
    switched = api.patch(f"{SUBSCRIPTIONS}{sid}/", {"channel": "email"}, format="json")
    assert switched.status_code == 200, switched.content
    assert (switched.json()["email"], switched.json()["url"], switched.json()["slack"]) == (
        "alice@example.com",
        "",
        False,
    )
    api.patch(f"{SUBSCRIPTIONS}{sid}/", {"channel": "webhook", "url": receiver.url}, format="json")
    cache.clear()  # as if another process: the subscribed kinds are read back from the table
    end_run(trigger, 0, F, frozen_clock, committed)
    log = api.get(DELIVERIES).json()
    (row,) = log["results"]
    assert (row["event"], row["status"], row["attempts"], row["response_code"], row["subscription"]) == (
        "failed",
        "delivered",
        1,
        200,
        sid,
    )
    assert api.get(f"{DELIVERIES}?status=failed").json()["results"] == []
    assert api.delete(f"{SUBSCRIPTIONS}{sid}/").status_code == 204
    assert api.get(f"{DELIVERIES}{row['id']}/").json()["subscription"] is None, "the log outlives it"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"event": "failed", "channel": "webhook", "url": "https://evil.example.com/x"},
            "url",
            id="not-allowed-host",
        ),
        pytest.param(
            {"event": "failed", "channel": "webhook", "url": "ftp://127.0.0.1/x"}, "url", id="scheme"
        ),
        pytest.param(
            {"event": "failed", "channel": "webhook", "url": "http://u:p@127.0.0.1/x"},
            "url",
            id="credentials",
        ),
        pytest.param({"event": "failed", "channel": "webhook"}, "url", id="no-url"),
        pytest.param({"event": "failures", "channel": "email"}, "threshold", id="failures-without-threshold"),
        pytest.param(
            {"event": "failures", "channel": "email", "threshold": 0}, "threshold", id="threshold-zero"
        ),
        pytest.param(
            {"event": "failed", "channel": "email", "threshold": 3}, "threshold", id="threshold-elsewhere"
        ),
        pytest.param(
            {"event": "skipped", "channel": "email", "skip_reasons": ["bored"]}, "skip_reasons", id="reason"
        ),
        pytest.param(
            {"event": "failed", "channel": "email", "skip_reasons": ["paused"]},
            "skip_reasons",
            id="reasons-elsewhere",
        ),
        pytest.param({"event": "exploded", "channel": "email"}, "event", id="event"),
        pytest.param({"event": "failed", "channel": "pigeon"}, "channel", id="channel"),
        pytest.param({"event": "failed", "channel": "email", "email": "not-an-address"}, "email", id="email"),
        pytest.param({"event": "failed", "channel": "email", "slack": True}, "slack", id="slack-on-email"),
        pytest.param(
            {"event": "failed", "channel": "email", "trigger": "0.5"}, "trigger", id="trigger-malformed"
        ),
    ],
)
def test_bad_subscriptions_are_400s_naming_the_field(body, field, alice):
    response = client_for(alice).post(SUBSCRIPTIONS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert Subscription.objects.count() == 0


def test_a_private_address_is_refused_when_subscribing(alice, settings, receiver):
    settings.SCHEDULER_NOTIFY_ALLOWED_NETWORKS = []
    body = {"event": "failed", "channel": "webhook", "url": receiver.url}
    response = client_for(alice).post(SUBSCRIPTIONS, body, format="json")
    assert response.status_code == 400
    assert "127.0.0.1" in response.json()["url"][0]


def test_an_email_subscription_needs_an_address(django_user_model):
    nobody = django_user_model.objects.create_user(username="nomail", password="pw")
    response = client_for(nobody).post(SUBSCRIPTIONS, {"event": "failed", "channel": "email"}, format="json")
    assert (response.status_code, list(response.json())) == (400, ["email"])


def test_users_never_see_each_others_subscriptions_or_deliveries(make, alice, bob, frozen_clock, committed):
    trigger = make()
    mine = subscribe(alice, committed, trigger=trigger.pk, event="failed")
    end_run(trigger, 0, F, frozen_clock, committed)
    (delivery,) = deliveries()
    api = client_for(bob)
    assert api.get(SUBSCRIPTIONS).json()["results"] == []
    assert api.get(DELIVERIES).json()["results"] == []
    for method in ("get", "patch", "put", "delete"):
        assert getattr(api, method)(f"{SUBSCRIPTIONS}{mine.pk}/", {}, format="json").status_code == 404
    assert api.get(f"{DELIVERIES}{delivery.pk}/").status_code == 404
    # Nor subscribe to someone else's trigger: it is "no trigger of yours".
    response = api.post(
        SUBSCRIPTIONS, {"trigger": str(trigger.pk), "event": "failed", "channel": "email"}, format="json"
    )
    assert (response.status_code, list(response.json())) == (400, ["trigger"])
    assert Subscription.objects.get(pk=mine.pk).active


# --- The admin ----------------------------------------------------------------------------------------------


def test_the_admin_lists_both_and_saves_through_the_services(
    make, alice, frozen_clock, committed, client, django_user_model
):
    trigger = make()
    admin_user = django_user_model.objects.create_superuser(
        username="root", password="pw", email="r@example.com"
    )
    client.force_login(admin_user)
    refused = client.post(
        "/admin/notifications/subscription/add/",
        {
            "owner": alice.pk,
            "trigger": trigger.pk,
            "event": "failed",
            "channel": "webhook",
            "url": "https://evil.example.com/",
        },
    )
    assert refused.status_code == 200
    assert b"allow-list" in refused.content
    with_capture = committed(
        client.post,
        "/admin/notifications/subscription/add/",
        {
            "owner": alice.pk,
            "trigger": trigger.pk,
            "event": "failures",
            "threshold": 2,
            "channel": "email",
            "active": "on",
        },
    )
    assert with_capture.status_code == 302, with_capture.content[:3000]
    (saved,) = Subscription.objects.all()
    assert (saved.email, saved.threshold, len(saved.secret) >= 32) == ("alice@example.com", 2, True)
    end_run(trigger, 0, F, frozen_clock, committed)
    end_run(trigger, 1, F, frozen_clock, committed)
    assert client.get("/admin/notifications/subscription/").status_code == 200
    page = client.get("/admin/notifications/delivery/")
    assert page.status_code == 200
    assert b"alice@example.com" in page.content


# --- The bulk path stays free -------------------------------------------------------------------------------


def test_a_fire_batch_nobody_listens_to_costs_no_query_more(alice, frozen_clock, committed):
    """A batch of paused triggers records only skipped rows, the kind the hook looks at: with the listener
    registered and nobody subscribed to skipped or missed slots (someone is, to failures), it runs the same
    queries as with no listener at all, and none on the notification tables."""
    frozen_clock.set(T0 - timedelta(seconds=30))
    triggers = [
        trigger_services.trigger_register(
            owner=alice, name=f"t{i}", workflow_id="w", cron_expression="* * * * *"
        )
        for i in range(30)
    ]
    for trigger in triggers:
        trigger_services.trigger_pause(trigger=trigger, reason="maint")
    subscribe(alice, committed, event="failed")
    assert events.wanted() == {"failed"}  # the cache is warm: a fire batch reads it from Redis, not the table

    def fire(n: int) -> CaptureQueriesContext:
        frozen_clock.set(minute(n))
        with CaptureQueriesContext(connection) as queries:
            rows = execution_fire_batch(fires=[Fire(t.pk, minute(n)) for t in triggers])
        assert len(rows) == 30
        assert {r.skip_reason for r in rows} == {"paused"}
        return queries

    fire(0)  # from now on each batch has one due slot per trigger, nothing to catch up
    listening = fire(1)
    events.unlisten(listener.LISTENER)
    try:
        without = fire(2)
    finally:
        events.listen(listener.LISTENER)
    assert len(listening) == len(without)
    assert not [q["sql"] for q in listening.captured_queries if "notifications_" in q["sql"]]


# --- Two routers at once ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_routers_racing_on_one_event_make_one_delivery(alice, mailoutbox):
    """The window is claimed under a unique key: routers in two connections, released together, make one
    delivery between them (and so do the next eight, inside the same window)."""
    trigger = trigger_services.trigger_register(
        owner=alice, name="raced", workflow_id="w", cron_expression="* * * * *"
    )
    services.subscription_create(owner=alice, trigger=trigger.pk, event="failed", channel="email")
    event = events.Event.of("failed", trigger=trigger, at=T0, reason="failed", failures=1)
    barrier = threading.Barrier(10)
    errors: list[BaseException] = []

    def route() -> None:
        try:
            barrier.wait(timeout=10)
            services.notification_route(events=[event])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=route) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert Delivery.objects.count() == 1
    assert len(mailoutbox) == 1
