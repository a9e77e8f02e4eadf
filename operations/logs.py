"""Log records for the whole fleet: readable text by default, one JSON object per line with
`LOG_FORMAT=json` (for log shippers); the run a line is about (`trigger_id`, `execution_id`, `slot`,
`attempt`) carried by a context variable; and every secret redacted before a line is written.

The context is a `ContextVar`, so it follows the code that set it (a Celery task, a request, a thread)
and never leaks between tasks: `bind(...)` around a block, or `extra={...}` on one call (extra wins).
Celery tasks are bound automatically from their arguments (`bind_task_context`, on `task_prerun`).

Redaction is the second line of defence: nothing in the scheduler logs a secret on purpose (launchers
scrub their error texts, tasks carry ids only), but a library at DEBUG level, a traceback of a failed
request or a careless f-string might. The filter replaces the operator's secrets (internal and cron
secrets, the secret key, the metrics token, secret-looking values and URL passwords of the target
configuration and the service URLs) and anything shaped like an API token or bearer credential.

Web processes get all this from `settings.LOGGING`. Celery installs its own handlers (and its text
format, which operators and the e2e tests read), so `celery_logger_ready` — connected to
`after_setup_logger` / `after_setup_task_logger` — gives those handlers the same filters, and in JSON mode
the JSON formatter. Celery keeps honouring `--loglevel`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import re
import threading
from collections.abc import Mapping
from contextvars import Token
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

# The context itself lives in the toolkit, so domain code can bind it; re-exported for callers of this module.
from toolkit.logcontext import CONTEXT_FIELDS, _context, bind, current_context, pop_context, push_context

__all__ = ["CONTEXT_FIELDS", "bind", "current_context", "pop_context", "push_context"]

MASK = "***"


@lru_cache(maxsize=256)
def _signature(function: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None


def task_context(task: Any, args: Any, kwargs: Any) -> dict[str, Any]:
    """The context fields a task call names: its arguments called `trigger_id`, `slot`, … plus the task's
    id and name. Read from the task's signature, so a new task needs no table entry here."""
    fields: dict[str, Any] = {"task": getattr(task, "name", None)}
    signature = _signature(getattr(task, "run", None))
    if signature is not None:
        try:
            bound = signature.bind_partial(*(args or ()), **(kwargs or {})).arguments
        except TypeError:
            bound = {}
        fields.update({name: bound[name] for name in CONTEXT_FIELDS if name in bound})
    return fields


#: Keyed by (task id, thread): on the threaded launcher two messages may carry one task id at once (the
#: follow-ups of a launch batch's rows), and prerun/postrun of one call always run in one thread.
_task_tokens: dict[tuple[str, int], Token[Mapping[str, Any]]] = {}


def bind_task_context(
    task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    """`task_prerun` receiver: bind the task's context until `task_postrun` (same thread, same task)."""
    if task_id is not None:
        token = push_context(**task_context(task, args, kwargs), task_id=task_id)
        _task_tokens[(task_id, threading.get_ident())] = token


def unbind_task_context(task_id: str | None = None, **_: Any) -> None:
    """`task_postrun` receiver."""
    key = (task_id, threading.get_ident()) if task_id is not None else None
    token = _task_tokens.pop(key, None) if key is not None else None
    if token is not None:
        with contextlib.suppress(ValueError):  # created in another context: nothing of ours to undo
            pop_context(token)


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (fields given with `extra=` are kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


# --- Redaction --------------------------------------------------------------------------------------------

#: `Bearer <credential>`, `Token <key>`, `token=<key>`: a credential has a digit and at least 16 characters,
#: so prose such as "token authentication failed" stays readable.
_CREDENTIAL = re.compile(
    r"(?i)\b(bearer|token|basic|api[_-]?key)(\s+|\s*[=:]\s*['\"]?)(?=[^\s'\"]*\d)[\w.~+/=-]{16,}"
)
#: DRF token keys: 40 hexadecimal characters.
_TOKEN_KEY = re.compile(r"\b[0-9a-f]{40}\b")


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password if "://" in url else None
    except ValueError:
        return None


def known_secrets() -> list[str]:
    """Every secret value the operator configured, longest first (a secret containing another is replaced
    whole). Read on each call: tests and `override_settings` change them, and the cost is a few lookups."""
    from django.conf import settings

    from executions.launchers.base import secrets_to_scrub

    found = set(secrets_to_scrub())
    found.add(getattr(settings, "METRICS_TOKEN", ""))
    urls = [getattr(settings, "REDIS_URL", ""), getattr(settings, "CELERY_BROKER_URL", "")]
    found.update(p for p in map(_url_password, urls) if p)
    found.update(str(db.get("PASSWORD") or "") for db in getattr(settings, "DATABASES", {}).values())
    return sorted((s for s in found if s and len(s) >= 4), key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with configured secrets and credential-shaped strings replaced by `***`."""
    try:
        secrets = known_secrets()
    except Exception:  # settings not configured yet (early start-up): the patterns still apply
        secrets = []
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _TOKEN_KEY.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Redacts the formatted message and the traceback text of every record passing the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: logging reports it later, as it would
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# --- Formatting -------------------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message, process, the context
    fields present, and `exception` / `stack` texts. Newlines inside values are escaped, so a traceback
    never splits a record across lines."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, ensure_ascii=False, default=str)


# --- Celery processes -------------------------------------------------------------------------------------


def celery_logger_ready(logger: logging.Logger | None = None, **_: Any) -> None:
    """`after_setup_logger` / `after_setup_task_logger` receiver: Celery's handlers get our filters, and in
    JSON mode our formatter (Celery's text format is kept otherwise)."""
    from django.conf import settings

    json_mode = getattr(settings, "LOG_FORMAT", "text") == "json"
    for handler in logger.handlers if logger is not None else ():
        for kind in (ContextFilter, RedactingFilter):
            if not any(isinstance(f, kind) for f in handler.filters):
                handler.addFilter(kind())
        if json_mode:
            handler.setFormatter(JsonFormatter())


def install_celery_hooks() -> None:
    """Connect the receivers above (called once, from `scheduler_project.celery`)."""
    from celery import signals

    signals.after_setup_logger.connect(celery_logger_ready, weak=False, dispatch_uid="scheduler-logs")
    signals.after_setup_task_logger.connect(celery_logger_ready, weak=False, dispatch_uid="scheduler-tlogs")
    signals.task_prerun.connect(bind_task_context, weak=False, dispatch_uid="scheduler-log-bind")
    signals.task_postrun.connect(unbind_task_context, weak=False, dispatch_uid="scheduler-log-unbind")
