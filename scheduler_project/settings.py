"""Settings, all from the environment, grouped by concern.

One file on purpose: every knob an operator can turn is visible here, with its default. Production reads
`DATABASE_URL`, `REDIS_URL`, `SECRET_KEY` and friends; a laptop gets SQLite and a local Redis with no setup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


# --- Core -------------------------------------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off (set DEBUG=1 for a dev default)."
        )
    SECRET_KEY = "dev-only-insecure-secret-key-change-me"  # noqa: S105 - only ever used with DEBUG on
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_results",
    # The audit trail of triggers (who changed what, when): schedules.models.Trigger.history.
    "simple_history",
    "schedules",
    "executions",
    "notifications",
    "operations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # 503 JSON with Retry-After when a view finds the database or Redis unreachable (toolkit.outage).
    "toolkit.outage.OutageMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Hands the request to the audit trail, so a change records its actor: the admin's user, or the API's
    # (DRF sets the authenticated user on the request it wraps, token and basic auth included).
    "simple_history.middleware.HistoryRequestMiddleware",
]
# A past version of a trigger is shown, never restored from the History page: a revert would write the row
# around schedules.services (its validation, its beat entry). Edits go through the change form.
SIMPLE_HISTORY_REVERT_DISABLED = True

ROOT_URLCONF = "scheduler_project.urls"
# Seconds a 503 for an unreachable database or Redis asks clients to wait (`Retry-After`).
OUTAGE_RETRY_AFTER_SECONDS = env_int("OUTAGE_RETRY_AFTER_SECONDS", 5)
WSGI_APPLICATION = "scheduler_project.wsgi.application"
ASGI_APPLICATION = "scheduler_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------------------
# PostgreSQL in production and CI; a SQLite file is the zero-setup laptop default. SQLite must bear several
# writer processes (web, worker, beat): WAL lets readers run beside a writer, the busy timeout makes writers
# wait instead of failing, and IMMEDIATE transactions take the write lock up front so two transactions never
# deadlock upgrading a read lock (SQLite's stand-in for select_for_update).
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'scheduler.sqlite3'}"
# Connections are kept (a worker task or a request no longer pays for a new PostgreSQL backend each time)
# and checked before reuse, so a restarted database is reconnected to without restarting the process.
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _sqlite_path = Path(str(DATABASES["default"]["NAME"]))
    if str(_sqlite_path) != ":memory:":
        _sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": env_int("SQLITE_BUSY_TIMEOUT_SECONDS", 20),
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file-backed test database (not :memory:) so e2e subprocesses can open the same file.
    DATABASES["default"]["TEST"] = {
        "NAME": os.environ.get("SQLITE_TEST_NAME") or str(BASE_DIR / "var" / "test_scheduler.sqlite3")
    }
elif os.environ.get("DATABASE_TEST_NAME"):
    # Lets two test runs share one PostgreSQL server without dropping each other's test database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["DATABASE_TEST_NAME"]}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------------------
# Shared by every web process, so API throttling counts per user across the fleet, not per gunicorn worker.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CACHE_URL") or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": "cache",
        "TIMEOUT": 300,
    }
}
if str(CACHES["default"]["LOCATION"]).startswith("sentinel://"):
    # Django's Redis cache has no Sentinel support: without a CACHE_URL, each process counts on its own.
    CACHES["default"] = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "cache"}

# --- Auth, i18n, static -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# The test suite (tests/envdefaults.py) sets this so users are cheap to create, in the test process and in
# the processes it starts alike; never set it in production.
if env_bool("INSECURE_FAST_PASSWORD_HASHING", False):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# A file missing from collectstatic's manifest keeps its plain URL instead of failing the page with a 500.
WHITENOISE_MANIFEST_STRICT = False
# Requests bodies are small JSON documents; anything larger is abuse.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 256 * 1024)

# --- Redis and Celery -------------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Separate Redis databases would be possible, but one URL keeps deployment simple; RedBeat keys are prefixed.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
#: The master's name when REDIS_URL or CELERY_BROKER_URL is a `sentinel://` URL (toolkit.redisurl).
REDIS_SENTINEL_MASTER = os.environ.get("REDIS_SENTINEL_MASTER", "mymaster")
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_PRIORITY = 6
# Queues by what their tasks wait on, so fires never wait behind launches (Procfile roles): `fire` records
# slots (short, database-bound: prefork `worker`), `launch` calls targets (I/O-bound, long: the `launcher`
# role's thread pool), `celery` the rest (sweeper, retention, housekeeping, demo workflows: `worker`). A
# worker started without -Q consumes all three.
CELERY_TASK_DEFAULT_QUEUE = "celery"
#: The queue fires are recorded from: fresh launch batches yield to its depth.
SCHEDULER_FIRE_QUEUE = "fire"
CELERY_TASK_QUEUES = [Queue(SCHEDULER_FIRE_QUEUE), Queue("launch"), Queue("celery")]
CELERY_TASK_ROUTES = {
    "executions.fire": {"queue": SCHEDULER_FIRE_QUEUE},
    "executions.fire_batch": {"queue": SCHEDULER_FIRE_QUEUE},
    "executions.launch": {"queue": "launch"},
    "executions.launch_batch": {"queue": "launch"},
}
# Survives a Redis restart under prefork workers (see scheduler_project/worker.py).
CELERY_WORKER_CONSUMER = "scheduler_project.worker:Consumer"
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# A message of a worker killed with -9 comes back after the visibility timeout;
# retry countdowns must stay below it.
BROKER_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": BROKER_VISIBILITY_TIMEOUT,
    "queue_order_strategy": "priority",
    "priority_steps": list(range(10)),
    "sep": ":",
}
if CELERY_BROKER_URL.startswith("sentinel://"):
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = REDIS_SENTINEL_MASTER

# RedBeat (applied to app.conf directly in scheduler_project/celery.py: the CELERY_ namespace does not reach
# every redbeat_* key the way one would expect).
# The braces are a Redis Cluster hash tag: every beat key (entries, schedule, lock) hashes to one slot, so
# each multi-key script runs on one node.
REDBEAT_KEY_PREFIX = os.environ.get("REDBEAT_KEY_PREFIX", "{redbeat}")
REDBEAT_LOCK_TIMEOUT = env_int("REDBEAT_LOCK_TIMEOUT", 30)
BEAT_MAX_LOOP_INTERVAL = env_float("BEAT_MAX_LOOP_INTERVAL", 1.0)
SCHEDULER_RECONCILE_SECONDS = env_int("SCHEDULER_RECONCILE_SECONDS", 60)
#: The slow full audit's pace: the fraction of one core the leader spends comparing every entry with its row
#: (0: no audit).
SCHEDULER_AUDIT_BUDGET = env_float("SCHEDULER_AUDIT_BUDGET", 0.02)

# --- Scheduler domain -------------------------------------------------------------------------------------
INTERNAL_API_SECRET = os.environ.get("INTERNAL_API_SECRET", "")
CRON_SECRET = os.environ.get("CRON_SECRET", "")
#: The agent task queue adapter (`/api/agent/execute`): the zone a schedule without one is read in (that
#: system's default), and how long `async: false` waits for the run (under gunicorn's 30 s request timeout).
AGENT_ADAPTER_TIMEZONE = os.environ.get("AGENT_ADAPTER_TIMEZONE", "America/New_York")
AGENT_SYNC_WAIT_SECONDS = env_float("AGENT_SYNC_WAIT_SECONDS", 25.0)
FLOWER_BASIC_AUTH = os.environ.get("FLOWER_BASIC_AUTH", "")
FLOWER_URL = os.environ.get("FLOWER_URL", "http://127.0.0.1:5555/")
SCHEDULER_MIN_INTERVAL_SECONDS = env_int("SCHEDULER_MIN_INTERVAL_SECONDS", 1)
SCHEDULER_MAX_TRIGGERS_PER_OWNER = env_int("SCHEDULER_MAX_TRIGGERS_PER_OWNER", 1000)
SCHEDULER_MAX_CATCHUP_SLOTS = env_int("SCHEDULER_MAX_CATCHUP_SLOTS", 100)
# A backfill (a past range of a trigger's slots run on request) refuses a range holding more slots than this,
# and a spread longer than this many seconds.
SCHEDULER_MAX_BACKFILL_SLOTS = env_int("SCHEDULER_MAX_BACKFILL_SLOTS", 1000)
SCHEDULER_MAX_BACKFILL_SPREAD_SECONDS = env_int("SCHEDULER_MAX_BACKFILL_SPREAD_SECONDS", 7 * 86_400)
# Fires per `executions.fire_batch` message: one transaction records them all (it locks that many triggers).
# A statement costs about the same for 200 rows as for 500, so bigger batches spend less per fire on the
# database (backend CPU per fire 0.097 -> 0.070 ms from 200 to 500, in-process); past 500 nothing more is won.
SCHEDULER_FIRE_BATCH_SIZE = env_int("SCHEDULER_FIRE_BATCH_SIZE", 500)
# Fresh runs per `executions.launch_batch` message (targets whose calls can go out together: demo, http);
# their calls are made at once, a thread each. 1 sends every launch on its own.
SCHEDULER_LAUNCH_BATCH_SIZE = env_int("SCHEDULER_LAUNCH_BATCH_SIZE", 16)
# How long a launch batch waits, once one call of it has returned, for more to return and be recorded in
# the same few statements (seconds; small beside any attempt's grace).
SCHEDULER_LAUNCH_RECORD_WINDOW = env_float("SCHEDULER_LAUNCH_RECORD_WINDOW", 0.02)
#: Recording first: a fresh launch batch waits (at most this long) while fire batches are queued and being
#: drained, so a herd's slots are all recorded before its launches take the CPU and the database (0: never).
SCHEDULER_LAUNCH_YIELD_SECONDS = env_float("SCHEDULER_LAUNCH_YIELD_SECONDS", 5.0)
SCHEDULER_MAX_CONCURRENT_PER_OWNER = env_int("SCHEDULER_MAX_CONCURRENT_PER_OWNER", 0)  # 0 = unlimited
# Runs of one workflow (one owner's triggers with the same workflow_id) going at once; 0 = unlimited. These
# three caps are the defaults: an operator overrides them per user (`schedules.OwnerLimits`, in the admin).
SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW = env_int("SCHEDULER_MAX_CONCURRENT_PER_WORKFLOW", 0)
# Dotted paths the `python` launcher may call (operator-only; a trigger names one as its workflow_id).
SCHEDULER_PYTHON_CALLABLES = env_list("SCHEDULER_PYTHON_CALLABLES", [])
# Finished executions older than this are pruned daily ("90d", "12h", "30m"); trigger counters survive.
SCHEDULER_EXECUTION_RETENTION = os.environ.get("SCHEDULER_EXECUTION_RETENTION", "90d")
# An attempt with no outcome this long past its call timeout is taken as dead (its worker was killed).
SCHEDULER_ATTEMPT_GRACE_SECONDS = env_float("SCHEDULER_ATTEMPT_GRACE_SECONDS", 5.0)
# Periodic system tasks the beat leader sends: the sweeper (timeouts, polls, lost messages) and retention.
SCHEDULER_SWEEP_SECONDS = env_float("SCHEDULER_SWEEP_SECONDS", 10.0)
SCHEDULER_PRUNE_SECONDS = env_float("SCHEDULER_PRUNE_SECONDS", 86_400.0)
SCHEDULER_DEFAULTS = {
    "overlap_policy": os.environ.get("SCHEDULER_DEFAULT_OVERLAP", "skip"),
    "catchup_policy": os.environ.get("SCHEDULER_DEFAULT_CATCHUP", "latest"),
    "catchup_window_seconds": env_int("SCHEDULER_DEFAULT_CATCHUP_WINDOW", 3600),
    "misfire_grace_seconds": env_int("SCHEDULER_DEFAULT_MISFIRE_GRACE", 60),
    "jitter_seconds": 0,
    "max_attempts": env_int("SCHEDULER_DEFAULT_MAX_ATTEMPTS", 3),
    "backoff_seconds": env_int("SCHEDULER_DEFAULT_BACKOFF", 2),
    "timeout_seconds": env_int("SCHEDULER_DEFAULT_TIMEOUT", 300),
    "priority": os.environ.get("SCHEDULER_DEFAULT_PRIORITY", "medium"),
}
try:
    SCHEDULER_TARGETS: dict[str, dict] = json.loads(
        os.environ.get("SCHEDULER_TARGETS") or '{"default": {"kind": "demo"}}'
    )
except json.JSONDecodeError as exc:
    raise ImproperlyConfigured(f"SCHEDULER_TARGETS is not valid JSON: {exc}") from exc

# --- Notifications ----------------------------------------------------------------------------------------
# Subscriptions to trigger events (notifications/): at most one notification per (subscription, trigger,
# event) per window; webhooks only to allowed hosts (exact names, "*.example.com", or "*"), never to a
# private, loopback or link-local address unless it lies in an allowed network (CIDRs, e.g. 127.0.0.1/32).
SCHEDULER_NOTIFY_WINDOW_SECONDS = env_int("SCHEDULER_NOTIFY_WINDOW_SECONDS", 3600)
SCHEDULER_NOTIFY_WEBHOOK_HOSTS = env_list("SCHEDULER_NOTIFY_WEBHOOK_HOSTS", [])
SCHEDULER_NOTIFY_ALLOWED_NETWORKS = env_list("SCHEDULER_NOTIFY_ALLOWED_NETWORKS", [])
SCHEDULER_NOTIFY_MAX_ATTEMPTS = env_int("SCHEDULER_NOTIFY_MAX_ATTEMPTS", 5)
SCHEDULER_NOTIFY_TIMEOUT_SECONDS = env_float("SCHEDULER_NOTIFY_TIMEOUT_SECONDS", 10.0)
# Final deliveries older than this go (with expired windows) in the periodic `notifications.prune`.
SCHEDULER_NOTIFY_RETENTION = os.environ.get("SCHEDULER_NOTIFY_RETENTION", "30d")
# A delivery pending or sending this long (its message was lost: broker down at commit, worker killed) is sent
# again by `notifications.sweep`, every SCHEDULER_NOTIFY_SWEEP_SECONDS; keep it well above the timeout.
SCHEDULER_NOTIFY_STUCK_SECONDS = env_float("SCHEDULER_NOTIFY_STUCK_SECONDS", 300.0)
SCHEDULER_NOTIFY_SWEEP_SECONDS = env_float("SCHEDULER_NOTIFY_SWEEP_SECONDS", 60.0)
# How long the "who subscribed to what" answer the fire path reads is cached (writes refresh it at once).
SCHEDULER_NOTIFY_CACHE_SECONDS = env_int("SCHEDULER_NOTIFY_CACHE_SECONDS", 60)
# Email: Django's backend; the console in development (DEBUG), SMTP (EMAIL_HOST, ...) otherwise.
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or (
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend"
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "scheduler@localhost")

# --- REST framework ---------------------------------------------------------------------------------------
# Token auth first: DRF answers an anonymous request with 401 only when the first authenticator sends a
# challenge. Throttle rates are "N/second|minute|hour|day" (empty = off); the throttle counters live in the
# default cache, so give the fleet a shared cache for them to hold across web processes.
#: Lists count matching rows exactly up to this many, then report PostgreSQL's estimate (`count_estimated`).
API_EXACT_COUNT_LIMIT = env_int("API_EXACT_COUNT_LIMIT", 1000)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "toolkit.api.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["toolkit.api.GuardedJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "toolkit.api.KeysetPage",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 50),
    "MAX_PAGE_SIZE": env_int("API_MAX_PAGE_SIZE", 200),
    "DEFAULT_THROTTLE_CLASSES": ["toolkit.api.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": os.environ.get("API_THROTTLE_USER", "600/min") or None,
        "auth": os.environ.get("API_THROTTLE_AUTH", "30/min") or None,
    },
    "EXCEPTION_HANDLER": "toolkit.api.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Workflow Scheduler API",
    "DESCRIPTION": (
        "Triggers that start workflows on a clock, in their own time zone, exactly once per slot.\n\n"
        "Authenticate with `Authorization: Token <token>` (or `Bearer <token>`); get a token from "
        "`POST /api/v1/auth/token/`. You see and change only your own triggers and executions: another "
        "user's id answers 404. Instants are ISO 8601 with an offset. Errors: 400 `{field: [messages]}`, "
        'otherwise `{"detail": message}`; the compatible `/api/scheduler/` endpoints answer '
        '`{"success": false, "error": "field: message"}`, and the flows API (`/api/_flows/`) its server\'s '
        '`{"error": true, "statusCode", "statusMessage": "field: message", "message", "data"}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "toolkit.api.document_error_responses",
    ],
    "SCHEMA_PATH_PREFIX": r"/api/(v1|scheduler)",
    "ENUM_NAME_OVERRIDES": {
        "TriggerStatusEnum": "schedules.models.TriggerStatus",
        "TriggerKindEnum": "schedules.models.TriggerKind",
        "ExecutionStatusEnum": "executions.models.ExecutionStatus",
        "ExecutionOriginEnum": "executions.models.ExecutionOrigin",
        "PriorityEnum": "schedules.models.Priority",
    },
    "TAGS": [
        {"name": "auth", "description": "Get an API token."},
        {"name": "triggers", "description": "Schedules that start workflows, and their actions."},
        {"name": "executions", "description": "Runs: scheduled, caught up, manual; their attempts."},
        {"name": "schedules", "description": "Cron preview and presets, for forms validating as you type."},
        {"name": "notifications", "description": "Subscriptions to trigger events, and their delivery log."},
        {"name": "compat", "description": "Endpoints of the earlier scheduler (camelCase, exact shapes)."},
        {"name": "flows", "description": "The flows scheduling API (`/api/_flows/`), its exact shapes."},
    ],
}

# --- Logging ----------------------------------------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line (operations/logs.py); the default is readable text. Every
# record carries the run it is about (trigger_id, execution_id, slot, attempt) and passes the redacting
# filter. Celery processes keep their own handlers and text format; scheduler_project/celery.py gives them
# the same filters (and the JSON formatter).
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO")
LOG_FORMAT = os.environ.get("LOG_FORMAT", "").strip().lower() or "text"
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'text' or 'json', got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "operations.logs.ContextFilter"},
        "redact": {"()": "operations.logs.RedactingFilter"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "operations.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "redact"],
        }
    },
    # Django's default config gives `django` its own console handler (DEBUG only) and level INFO: its lines
    # would print twice, once unformatted and unredacted, and LOG_LEVEL=DEBUG would not reach them (SQL with
    # DEBUG=1). They reach ours through the root logger instead, at LOG_LEVEL.
    "loggers": {"django": {"handlers": [], "level": LOG_LEVEL, "propagate": True}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
}
#: Levels of single loggers over LOG_LEVEL, comma-separated `name=LEVEL`: e.g.
#: `LOG_LEVELS=schedules.beat.fires=DEBUG` for the beat's line per fire (it logs one per batch at INFO).
for _name, _, _level in (part.partition("=") for part in os.environ.get("LOG_LEVELS", "").split(",")):
    if _name.strip():
        if not _level.strip():
            raise ImproperlyConfigured(f"LOG_LEVELS: expected name=LEVEL, got {_name!r}")
        LOGGING["loggers"][_name.strip()] = {"level": _level.strip().upper(), "propagate": True}  # type: ignore[index]

# --- Operations -------------------------------------------------------------------------------------------
# Metrics, health, fleet status and shutdown (operations/metrics.py, health.py, status.py,
# shutdown.py). Metric counters live in Redis under REDBEAT_KEY_PREFIX, so every process of the fleet adds
# to the same figures whatever container it runs in.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")  # Bearer token /metrics requires; empty = open
# /healthz: a beat heartbeat older than this (default three loop intervals) counts as no beat.
HEALTH_BEAT_MAX_AGE_SECONDS = env_float("HEALTH_BEAT_MAX_AGE_SECONDS", 3 * BEAT_MAX_LOOP_INTERVAL)
HEALTH_WORKER_PING_TIMEOUT = env_float("HEALTH_WORKER_PING_TIMEOUT", 2.0)
# /api/v1/status/ and `manage.py fleet status`: how long to wait for workers' inspect replies.
STATUS_INSPECT_TIMEOUT = env_float("STATUS_INSPECT_TIMEOUT", 1.0)
# SIGTERM on a worker: running launches get this long to finish, then they are cancelled and requeued
# (0 = wait without limit, Celery's plain warm shutdown). Keep it below the orchestrator's kill timeout.
WORKER_SHUTDOWN_GRACE_SECONDS = env_float("WORKER_SHUTDOWN_GRACE_SECONDS", 30.0)
