"""The Celery app. RedBeat's keys are set on app.conf directly: the CELERY_ settings namespace does not map
`redbeat_*` names the way one would expect, and a silent miss here means an unlocked beat."""

import os

from celery import Celery
from django.conf import settings

from operations import logs, shutdown
from toolkit import redisurl

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_project.settings")

app = Celery("scheduler_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.redbeat_key_prefix = settings.REDBEAT_KEY_PREFIX
app.conf.redbeat_lock_key = f"{settings.REDBEAT_KEY_PREFIX}::lock"
app.conf.redbeat_lock_timeout = settings.REDBEAT_LOCK_TIMEOUT
# Explicit (RedBeat's fallback to broker_transport_options is deprecated), with timeouts so a beat facing a
# Redis that stopped answering fails its tick and backs off instead of hanging on a socket.
# A sentinel:// REDIS_URL becomes RedBeat's own Sentinel configuration (toolkit.redisurl).
app.conf.redbeat_redis_url, app.conf.redbeat_redis_options = redisurl.redbeat_config(
    settings.REDIS_URL,
    master=settings.REDIS_SENTINEL_MASTER,
    options={"socket_connect_timeout": 3, "socket_timeout": 10},
)
app.conf.beat_max_loop_interval = settings.BEAT_MAX_LOOP_INTERVAL
app.conf.beat_scheduler = "schedules.beat.scheduler:TriggerScheduler"
app.autodiscover_tasks()
# Operations: our log filters and format on Celery's own handlers, the run's ids bound from each task's
# arguments; SIGTERM lets running tasks finish for WORKER_SHUTDOWN_GRACE_SECONDS, then requeues them.
logs.install_celery_hooks()
shutdown.install()
