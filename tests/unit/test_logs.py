"""Log records: the JSON line, the run's context (bound, from task arguments, or given with `extra=`), the
redaction of secrets, and the wiring of Celery's own handlers."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from operations import logs
from tests.support.procs import ROOT
from tests.unit.test_settings import load_settings

TOKEN_KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a DRF token key


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    """A logger writing through a handler set up as settings.LOGGING sets up the console (JSON flavour)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.addFilter(logs.RedactingFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_has_the_fields_and_the_bound_context(captured) -> None:
    logger, stream, _ = captured
    with logs.bind(trigger_id="t-1", slot="2026-03-02T12:00:00+00:00"):
        with logs.bind(execution_id="e-1", attempt=2):
            logger.info("launching %s", "wf")
        logger.warning("after the inner block")
    logger.info("outside")
    inner, after, outside = lines(stream)
    assert inner["message"] == "launching wf"
    assert (inner["level"], inner["logger"]) == ("INFO", "tests.logs")
    assert inner["timestamp"].endswith("+00:00")
    assert {k: inner[k] for k in ("trigger_id", "slot", "execution_id", "attempt")} == {
        "trigger_id": "t-1",
        "slot": "2026-03-02T12:00:00+00:00",
        "execution_id": "e-1",
        "attempt": 2,
    }
    assert "execution_id" not in after
    assert after["trigger_id"] == "t-1"
    assert "trigger_id" not in outside


def test_extra_wins_over_the_context_and_a_traceback_stays_on_one_line(captured) -> None:
    logger, stream, _ = captured
    with logs.bind(execution_id="bound"):
        try:
            raise ValueError("first line\nsecond line")
        except ValueError:
            logger.exception("failed", extra={"execution_id": "given"})
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = lines(stream)
    assert line["execution_id"] == "given"
    assert "ValueError: first line\nsecond line" in line["exception"]


def test_task_context_comes_from_the_tasks_signature() -> None:
    class Task:
        name = "executions.fire"

        @staticmethod
        def run(trigger_id: str, slot: str, origin: str = "schedule") -> None:
            return None

    assert logs.task_context(Task(), ["t-9", "2026-03-02T12:00:00+00:00"], {"origin": "tick"}) == {
        "task": "executions.fire",
        "trigger_id": "t-9",
        "slot": "2026-03-02T12:00:00+00:00",
    }


def test_task_prerun_binds_until_postrun(captured) -> None:
    logger, stream, _ = captured

    class Launch:
        name = "executions.launch"

        @staticmethod
        def run(execution_id: str) -> None:
            return None

    logs.bind_task_context(task_id="task-1", task=Launch(), args=["e-7"], kwargs={})
    logger.info("inside the task")
    logs.unbind_task_context(task_id="task-1")
    logger.info("after the task")
    inside, after = lines(stream)
    assert (inside["execution_id"], inside["task_id"], inside["task"]) == (
        "e-7",
        "task-1",
        "executions.launch",
    )
    assert "execution_id" not in after
    assert "task_id" not in after


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "Authorization: Bearer sk_live_0123456789abcdef", "Authorization: Bearer ***", id="bearer"
        ),
        pytest.param(f"Token {TOKEN_KEY}", "Token ***", id="drf-token-header"),
        pytest.param(f"WHERE key = '{TOKEN_KEY}'", "WHERE key = '***'", id="token-key-in-sql"),
        pytest.param("api_key=abc123abc123abc123abc", "api_key=***", id="api-key"),
        pytest.param("token authentication failed for user 7", None, id="prose-untouched"),
        pytest.param("slot 2026-03-02T12:00:00+00:00 of 6f1c…", None, id="ids-untouched"),
    ],
)
def test_credential_shapes_are_redacted(text: str, expected: str | None) -> None:
    assert logs.redact(text) == (text if expected is None else expected)


def test_configured_secrets_are_redacted_wherever_they_appear(settings) -> None:
    settings.METRICS_TOKEN = "metrics-token-value"
    settings.SCHEDULER_TARGETS = {
        "x": {"kind": "http", "url": "https://u:target-pw-1@host/", "api_token": "tgt-tok"}
    }
    text = (
        f"{settings.INTERNAL_API_SECRET} {settings.CRON_SECRET} {settings.SECRET_KEY} metrics-token-value "
        "target-pw-1 tgt-tok"
    )
    assert logs.redact(text) == " ".join(["***"] * 6)


def test_the_filter_redacts_arguments_and_tracebacks(captured, settings) -> None:
    logger, stream, _ = captured
    secret = settings.INTERNAL_API_SECRET
    try:
        raise RuntimeError(f"target said: bad secret {secret}")
    except RuntimeError:
        logger.exception("call with %s failed", secret)
    output = stream.getvalue()
    assert secret not in output
    (line,) = lines(stream)
    assert line["message"] == "call with *** failed"
    assert "bad secret ***" in line["exception"]


def test_celery_handlers_get_the_filters_and_in_json_mode_the_formatter(settings) -> None:
    logger = logging.getLogger("tests.logs.celery")
    handler = logging.StreamHandler(io.StringIO())
    logger.addHandler(handler)
    try:
        settings.LOG_FORMAT = "text"
        logs.celery_logger_ready(logger=logger)
        logs.celery_logger_ready(logger=logger)  # Celery may call it for the root and the task logger
        assert sorted(type(f).__name__ for f in handler.filters) == ["ContextFilter", "RedactingFilter"]
        assert not isinstance(handler.formatter, logs.JsonFormatter), "text mode keeps Celery's format"
        settings.LOG_FORMAT = "json"
        logs.celery_logger_ready(logger=logger)
        assert isinstance(handler.formatter, logs.JsonFormatter)
    finally:
        logger.removeHandler(handler)


def test_log_format_is_checked_at_start_up() -> None:
    result = load_settings(LOG_FORMAT="xml", DEBUG="1")
    assert result.returncode != 0
    assert "LOG_FORMAT must be 'text' or 'json'" in result.stderr


def test_json_mode_configures_the_web_process_console() -> None:
    probe = "import logging, django; django.setup(); logging.getLogger('probe').warning('hello %s', 'world')"
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "scheduler_project.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = [json.loads(x) for x in result.stderr.splitlines() if '"logger": "probe"' in x]
    assert (line["message"], line["level"]) == ("hello world", "WARNING")


def test_two_threads_running_calls_with_one_task_id_keep_their_own_context() -> None:
    """The threaded launcher can run two messages that share a task id (follow-ups of one launch batch)."""
    import threading

    class Launch:
        name = "executions.launch"

        @staticmethod
        def run(execution_id: str) -> None:
            return None

    inside_both = threading.Barrier(2)
    seen: dict[str, tuple[object, object]] = {}

    def task(execution_id: str) -> None:
        logs.bind_task_context(task_id="shared", task=Launch(), args=[execution_id], kwargs={})
        inside_both.wait(timeout=5)
        during = logs.current_context().get("execution_id")
        inside_both.wait(timeout=5)
        logs.unbind_task_context(task_id="shared")
        seen[execution_id] = (during, logs.current_context().get("execution_id"))

    threads = [threading.Thread(target=task, args=(pk,)) for pk in ("e-1", "e-2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert seen == {"e-1": ("e-1", None), "e-2": ("e-2", None)}
