"""Launcher pieces that need no database, broker or network: the signature, secret scrubbing, how exceptions
become attempt outcomes, the demo engine's determinism, target configuration errors, the Python allow-list,
the payload's two spellings and the call-timeout bounds."""

from __future__ import annotations

import hashlib
import hmac
import socket
import urllib.error
from datetime import UTC, datetime, timedelta

import pytest

from executions import signing
from executions.launchers import demo
from executions.launchers.base import (
    LauncherConfigError,
    LaunchPayload,
    LaunchResult,
    LaunchStatus,
    clip_result,
    get_launcher,
    scrub,
)
from executions.launchers.python import PythonLauncher
from executions.models import Execution
from schedules.models import Trigger

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SECRET = "s3cret-value-for-tests"


def sample_callable(payload: dict) -> dict:
    """An allow-listed Python target for the tests."""
    return {"echo": payload["input"], "attempt": payload["attempt"]}


def execution(**trigger_fields) -> Execution:
    trigger = Trigger(name="t", workflow_id="wf/one", target="default", timeout_seconds=30, **trigger_fields)
    return Execution(trigger=trigger, slot=NOW, input={"k": 1}, attempts=2, origin="schedule")


# --- signature --------------------------------------------------------------------------------------------


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    body = b'{"status":"succeeded"}'
    header = signing.sign(body, secret=SECRET, now=NOW)
    t = int(NOW.timestamp())
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={expected}"
    signing.verify(header, body, secret=SECRET, now=NOW + timedelta(seconds=299))


@pytest.mark.parametrize(
    ("header", "body", "now", "message"),
    [
        pytest.param(None, b"{}", NOW, "missing", id="missing"),
        pytest.param("v1=abc", b"{}", NOW, "malformed", id="no-timestamp"),
        pytest.param("t=1,v1=", b"{}", NOW, "malformed", id="no-mac"),
        pytest.param("SIGNED", b"{}", NOW, "malformed", id="garbage"),
        pytest.param("OK", b'{"tampered":1}', NOW, "does not match", id="tampered-body"),
        pytest.param("OK", b"{}", NOW + timedelta(minutes=6), "more than 300 s", id="stale"),
        pytest.param("OK", b"{}", NOW - timedelta(minutes=6), "more than 300 s", id="from-the-future"),
    ],
)
def test_bad_signatures_are_refused(header, body, now, message) -> None:
    if header == "OK":
        header = signing.sign(b"{}", secret=SECRET, now=NOW)
    with pytest.raises(signing.SignatureError, match=message):
        signing.verify(header, body, secret=SECRET, now=now)


def test_rotation_accepts_any_listed_mac_and_empty_secret_refuses_everything() -> None:
    good = signing.sign(b"{}", secret=SECRET, now=NOW)
    t, mac = good.split(",")
    signing.verify(f"{t},v1={'0' * 64},{mac}", b"{}", secret=SECRET, now=NOW)
    with pytest.raises(signing.SignatureError, match="not set"):
        signing.verify(good, b"{}", secret="", now=NOW)
    with pytest.raises(signing.SignatureError, match="not set"):
        signing.sign(b"{}", secret="", now=NOW)


# --- secrets ----------------------------------------------------------------------------------------------


def test_scrub_removes_every_secret_an_error_could_echo(settings) -> None:
    settings.INTERNAL_API_SECRET = "internal-abcdef"
    settings.SCHEDULER_TARGETS = {
        "a": {"kind": "http", "url": "https://user:url-pass-123@runner/x", "api_token": "tok-98765"},
    }
    text = (
        "failed: Bearer internal-abcdef at https://user:url-pass-123@runner/x "
        "with tok-98765; Authorization: Bearer something-else"
    )
    cleaned = scrub(text)
    for secret in ("internal-abcdef", "url-pass-123", "tok-98765", "something-else"):
        assert secret not in cleaned
    assert cleaned.count("***") >= 4
    assert len(scrub("x" * 10_000)) <= 2000


def test_failed_results_are_scrubbed(settings) -> None:
    settings.INTERNAL_API_SECRET = "internal-abcdef"
    assert "internal-abcdef" not in LaunchResult.failed("echo internal-abcdef").error
    assert "internal-abcdef" not in LaunchResult.from_exception(ValueError("internal-abcdef")).error


# --- exceptions -> outcomes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "retryable", "timed_out"),
    [
        pytest.param(TimeoutError("read timed out"), True, True, id="read-timeout"),
        pytest.param(urllib.error.URLError(TimeoutError("connect")), True, True, id="connect-timeout"),
        pytest.param(ConnectionRefusedError(111, "refused"), True, False, id="refused"),
        pytest.param(urllib.error.URLError(ConnectionResetError()), True, False, id="reset"),
        pytest.param(socket.gaierror(-2, "Name or service not known"), True, False, id="dns"),
        pytest.param(ValueError("bad"), False, False, id="bug"),
        pytest.param(LauncherConfigError("no url"), False, False, id="config"),
    ],
)
def test_exceptions_become_attempt_outcomes(exc, retryable, timed_out) -> None:
    result = LaunchResult.from_exception(exc)
    assert result.status is LaunchStatus.FAILED
    assert (result.retryable, result.timed_out) == (retryable, timed_out)
    assert result.exception == type(exc).__name__


def test_results_that_are_not_small_json_are_replaced_by_a_note() -> None:
    assert clip_result({"a": [1, 2]}) == {"a": [1, 2]}
    assert "not JSON" in clip_result({"a": object()})["note"]
    assert "dropped" in clip_result({"a": "x" * 70_000})["note"]


# --- payload and timeouts ---------------------------------------------------------------------------------


def test_payload_spelt_for_http_and_for_python() -> None:
    run = execution()
    payload = LaunchPayload.of(run)
    assert payload.as_json() == {
        "executionId": str(run.pk),
        "triggerId": str(run.trigger.pk),
        "workflowId": "wf/one",
        "scheduledAt": "2026-03-02T12:00:00Z",
        "attempt": 2,
        "input": {"k": 1},
        "metadata": {},
    }
    assert payload.as_kwargs()["execution_id"] == str(run.pk)
    assert set(payload.as_kwargs()) == {
        "execution_id", "trigger_id", "workflow_id", "scheduled_at", "attempt", "input", "metadata"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("timeout", "max_timeout", "visibility", "expected"),
    [
        pytest.param(30, None, 3600, 30.0, id="trigger-timeout"),
        pytest.param(600, None, 3600, 300.0, id="default-max-timeout"),
        pytest.param(600, 45, 3600, 45.0, id="target-max-timeout"),
        pytest.param(600, 900, 100, 90.0, id="below-visibility-timeout"),
    ],
)
def test_call_timeout_is_bounded(settings, timeout, max_timeout, visibility, expected) -> None:
    settings.BROKER_VISIBILITY_TIMEOUT = visibility
    config = {"kind": "demo"} if max_timeout is None else {"kind": "demo", "max_timeout": max_timeout}
    settings.SCHEDULER_TARGETS = {"default": config}
    run = execution()
    run.trigger.timeout_seconds = timeout
    assert get_launcher("default").call_timeout(run) == expected


# --- configuration ----------------------------------------------------------------------------------------


def test_targets_are_resolved_from_operator_configuration_only(settings) -> None:
    settings.SCHEDULER_TARGETS = {"demo": {"kind": "demo"}, "odd": {"kind": "ftp"}}
    assert get_launcher("demo").kind == "demo"
    with pytest.raises(LauncherConfigError, match="unknown target"):
        get_launcher("https://evil.example/")
    with pytest.raises(LauncherConfigError, match="unknown kind 'ftp'"):
        get_launcher("odd")


def test_python_callables_must_be_allow_listed(settings) -> None:
    settings.SCHEDULER_PYTHON_CALLABLES = ["tests.unit.test_launchers.sample_callable"]
    launcher = PythonLauncher("py", {"kind": "python"})
    run = execution()
    run.trigger.workflow_id = "tests.unit.test_launchers.sample_callable"
    result = launcher.launch(run)
    assert result.status is LaunchStatus.SUCCEEDED
    assert result.result == {"echo": {"k": 1}, "attempt": 2}
    with pytest.raises(LauncherConfigError, match="not an allow-listed"):
        launcher.resolve("os.system")
    fixed = PythonLauncher("py", {"kind": "python", "callable": "tests.unit.test_launchers:sample_callable"})
    assert fixed.resolve("anything the user typed") is sample_callable


# --- demo engine ------------------------------------------------------------------------------------------


def test_demo_outcome_is_a_function_of_execution_and_attempt() -> None:
    fates = [demo.plan("flaky", f"exec-{n}", attempt) for n in range(40) for attempt in (1, 2)]
    assert fates == [demo.plan("flaky", f"exec-{n}", attempt) for n in range(40) for attempt in (1, 2)]
    outcomes = {fate.succeeds for fate in fates}
    assert outcomes == {True, False}, "a 50% flaky workflow shows both ends over 80 attempts"
    assert all(demo.plan("hello", f"e{n}", 1).succeeds for n in range(50))
    broken = [demo.plan("broken", f"e{n}", 1) for n in range(20)]
    assert all(not fate.succeeds and not fate.retryable for fate in broken)
    assert demo.plan("no-such-workflow", "e", 1).workflow == "default"


def test_demo_launcher_follows_its_plan(settings) -> None:
    settings.SCHEDULER_TARGETS = {"default": {"kind": "demo", "speed": 0}}
    for n in range(10):
        run = execution()
        run.trigger.workflow_id = "flaky"
        run.attempts = n % 3 + 1
        fate = demo.plan("flaky", str(run.pk), run.attempts)
        result = get_launcher("default").launch(run)
        assert (result.status is LaunchStatus.SUCCEEDED) == fate.succeeds
        if not fate.succeeds:
            assert result.retryable == fate.retryable
            assert fate.failed_step in result.error


def test_demo_slow_workflow_times_out(settings) -> None:
    settings.SCHEDULER_TARGETS = {
        "default": {"kind": "demo", "workflows": {"nap": {"steps": ["a", "b"], "seconds": 4}}}
    }
    run = execution()
    run.trigger.workflow_id = "nap"
    run.trigger.timeout_seconds = 1
    result = get_launcher("default").launch(run)
    assert (result.status, result.timed_out, result.retryable) == (LaunchStatus.FAILED, True, True)


def slow_callable(payload: dict) -> None:
    import time

    time.sleep(3)


def failing_callable(payload: dict) -> None:
    raise ConnectionError("downstream refused")


def test_python_callables_are_bounded_by_the_timeout_and_errors_are_classified(settings) -> None:
    run = execution()
    run.trigger.timeout_seconds = 1
    slow = PythonLauncher("py", {"kind": "python", "callable": "tests.unit.test_launchers.slow_callable"})
    result = slow.launch(run)
    assert (result.status, result.timed_out, result.retryable) == (LaunchStatus.FAILED, True, False)
    failing = PythonLauncher(
        "py", {"kind": "python", "callable": "tests.unit.test_launchers.failing_callable"}
    )
    with pytest.raises(ConnectionError):
        failing.launch(run)  # the launch service turns it into a retryable attempt
    assert LaunchResult.from_exception(ConnectionError()).retryable
